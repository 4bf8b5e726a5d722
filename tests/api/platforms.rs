//! The seed platforms' providers (Zagely, Botbiz, Chattu, Mavibot, MazBot) against mock servers on 127.0.0.1 in
//! the shapes their documents give: a campaign reaches each with its authentication, path, body
//! and phone format; their refusals and rate limits do what they mean; their webhooks, signed and
//! forged, count or are refused.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::Api;
use crate::common::TestDb;

const JANE: &str = "+201012345611";
const REFUSED: &str = "+201012345612";
const RATE_LIMITED: &str = "+201012345613";

/// A platform's answers: a refusal for `REFUSED`, a rate limit for `RATE_LIMITED`'s first
/// attempt, and an accepted send with the id `m-<digits>` for anyone else.
struct Platform {
    /// The recipient in a request's body.
    to: fn(&Value) -> String,
    accepted: fn(&str) -> ResponseTemplate,
    refused: fn() -> ResponseTemplate,
    rate_limited: fn() -> ResponseTemplate,
    attempts: Mutex<HashMap<String, usize>>,
}

impl Respond for Platform {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        // A multipart form (MazBot's) names its recipient in the `mobile` field.
        let form = String::from_utf8_lossy(&request.body);
        let mobile = form
            .split_once("name=\"mobile\"\r\n\r\n")
            .and_then(|(_, rest)| rest.split_once("\r\n"))
            .map(|(mobile, _)| mobile.to_owned());
        let digits: String = mobile
            .unwrap_or_else(|| (self.to)(&body))
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
            let count = attempts.entry(digits.clone()).or_default();
            *count += 1;
            *count
        };
        if format!("+{digits}") == REFUSED {
            (self.refused)()
        } else if format!("+{digits}") == RATE_LIMITED && attempt == 1 {
            (self.rate_limited)()
        } else {
            (self.accepted)(&digits)
        }
    }
}

/// Jane, the refused and the rate-limited recipient, tagged `spring`.
async fn recipients(api: &Api) {
    for (phone, name) in [(JANE, "Jane"), (REFUSED, "Omar"), (RATE_LIMITED, "Sara")] {
        api.contact(phone, json!({"name": name, "tags": ["spring"]}))
            .await;
    }
}

/// Starts "Hi <<name|there>>!" to the `spring` tag and waits until it completed; its stats.
async fn campaign_completed(api: &Api, sender: &str) -> (String, Value) {
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": sender, "content": "Hi <<name|there>>!",
                   "audience": {"type": "tags", "tags": ["spring"]}}),
        )
        .await
        .id();
    api.post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    let stats = api
        .wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    (campaign, stats)
}

fn counts(stats: &Value) -> [i64; 4] {
    ["sent", "delivered", "read", "failed"].map(|name| stats[name].as_i64().unwrap_or(-1))
}

/// The campaign's message to `to`.
async fn message_to(api: &Api, campaign: &str, to: &str) -> Value {
    let messages = api
        .get(&format!("/v1/campaigns/{campaign}/messages?per_page=200"))
        .await;
    messages.expect(200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["to"] == to)
        .cloned()
        .unwrap_or_else(|| panic!("no message to {to}: {}", messages.body))
}

/// The bodies a platform received for `digits`, in order.
async fn requests_for(server: &MockServer, digits: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|request| String::from_utf8_lossy(&request.body).contains(digits))
        .collect()
}

fn json_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

fn hex_hmac(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn callback(api: &Api, sender: &str, body: &Value, headers: &[(&str, String)]) -> Value {
    let mut request = api
        .client_without_token(Method::POST, &format!("/v1/callbacks/{sender}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let reply = api.send(request).await;
    json!({"status": reply.status.as_u16(), "body": reply.body})
}

async fn created_sender(api: &Api, provider: &str, config: Value) -> String {
    let created = api
        .post(
            "/v1/senders",
            json!({"name": provider, "provider": provider, "provider_config": config,
                   "pacing": {"rate_per_minute": 60000}}),
        )
        .await;
    created.expect(201);
    created.id()
}

const ZAGELY_SESSION: &str = "11111111-2222-3333-4444-555555555555";
const ZAGELY_WEBHOOK_SECRET: &str = "zagely-whsec";

fn zagely_headers(body: &Value, timestamp: i64, secret: &str) -> Vec<(&'static str, String)> {
    let signature = hex_hmac(secret, &format!("{timestamp}.{body}"));
    vec![
        ("X-Zagely-Event", "message.delivered".to_owned()),
        ("X-Zagely-Timestamp", timestamp.to_string()),
        ("X-Zagely-Signature", format!("sha256={signature}")),
    ]
}

async fn a_campaign_reaches_zagely_with_its_key_pair_and_its_signed_webhooks_count(db: TestDb) {
    let zagely = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/messages/send"))
        .and(header("x-public-key", "pk_test"))
        .and(header("x-secret-key", "sk_test"))
        .respond_with(Platform {
            to: |body| body["to"].as_str().unwrap_or_default().to_owned(),
            accepted: |digits| {
                ResponseTemplate::new(201)
                    .set_body_json(json!({"status": "queued", "message_id": format!("m-{digits}")}))
            },
            refused: || {
                ResponseTemplate::new(422).set_body_json(json!({"error": {
                    "code": "validation_failed", "message": "The given data was invalid.",
                    "details": {"errors": {"to": ["The to field is invalid."]}}}}))
            },
            rate_limited: || {
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"error": {"code": "rate_limit_exceeded",
                                                    "message": "Too many requests."}}))
            },
            attempts: Mutex::default(),
        })
        .mount(&zagely)
        .await;
    let api = Api::start(db).await;
    let sender = created_sender(
        &api,
        "zagely",
        json!({"public_key": "pk_test", "secret_key": "sk_test", "session_id": ZAGELY_SESSION,
               "webhook_secret": ZAGELY_WEBHOOK_SECRET, "api_base": zagely.uri()}),
    )
    .await;
    let shown = api.get(&format!("/v1/senders/{sender}")).await;
    let config = &shown.expect(200)["provider_config"];
    assert_eq!(
        (&config["secret_key"], &config["webhook_secret"]),
        (&json!("***"), &json!("***"))
    );
    assert_eq!(config["public_key"], "pk_test");

    recipients(&api).await;
    let (campaign, stats) = campaign_completed(&api, &sender).await;
    assert_eq!(counts(&stats), [2, 0, 0, 1], "{stats}");
    let refused = message_to(&api, &campaign, REFUSED).await;
    assert_eq!(
        refused["error"],
        "HTTP 422: validation_failed: The given data was invalid."
    );
    let jane = message_to(&api, &campaign, JANE).await;
    let sent = requests_for(&zagely, "201012345611").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        json_of(&sent[0]),
        json!({"channel": "whatsapp", "to": JANE, "message": "Hi Jane!",
               "session_id": ZAGELY_SESSION})
    );
    assert_eq!(
        sent[0].headers["idempotency-key"].to_str().unwrap(),
        jane["id"].as_str().unwrap(),
        "Herald's message id is Zagely's idempotency key"
    );
    // Rate limited once, then sent with the same key.
    let sara = requests_for(&zagely, "201012345613").await;
    assert_eq!(sara.len(), 2);
    assert_eq!(
        sara[0].headers["idempotency-key"],
        sara[1].headers["idempotency-key"]
    );
    assert_eq!(
        message_to(&api, &campaign, RATE_LIMITED).await["status"],
        "sent"
    );

    // Zagely's delivery report, signed; a forged one and a stale one change nothing.
    let delivered = json!({"event": "message.delivered", "tenant_id": "t",
        "delivery_id": "d-1", "occurred_at": "2026-04-21T10:30:00Z",
        "data": {"message_id": "m-201012345611", "channel": "whatsapp"}});
    let now = chrono::Utc::now().timestamp();
    let forged = callback(
        &api,
        &sender,
        &delivered,
        &zagely_headers(&delivered, now, "a-guess"),
    )
    .await;
    assert_eq!(forged["status"], 401, "{forged}");
    let stale = callback(
        &api,
        &sender,
        &delivered,
        &zagely_headers(&delivered, now - 600, ZAGELY_WEBHOOK_SECRET),
    )
    .await;
    assert_eq!(stale["status"], 401, "{stale}");
    let signed = zagely_headers(&delivered, now, ZAGELY_WEBHOOK_SECRET);
    assert_eq!(
        callback(&api, &sender, &delivered, &signed).await["status"],
        200
    );
    let stats = api.get(&format!("/v1/campaigns/{campaign}/stats")).await;
    assert_eq!(counts(stats.expect(200)), [2, 1, 0, 1]);

    // A customer writes in: an inbound message on a new contact with Zagely's name for them.
    let received = json!({"event": "message.received", "delivery_id": "d-2",
        "occurred_at": "2026-04-21T10:31:00Z",
        "data": {"contact": {"id": "c-1", "name": "Layla", "phone_number": "+201012345688",
                             "email": null},
                 "channel": "whatsapp", "content": "Is the sale still on?"}});
    let signed = zagely_headers(&received, now, ZAGELY_WEBHOOK_SECRET);
    let answered = callback(&api, &sender, &received, &signed).await;
    assert_eq!(answered["body"]["inbound"], 1, "{answered}");
    let inbound = api.get("/v1/messages?direction=inbound").await;
    let inbound = &inbound.expect(200)["data"][0];
    assert_eq!(
        (&inbound["from"], &inbound["body"]),
        (&json!("+201012345688"), &json!("Is the sale still on?"))
    );
    let layla = api.get("/v1/contacts?search=Layla").await;
    assert_eq!(layla.expect(200)["data"][0]["phone"], "+201012345688");
    api.stop().await;
}

const BOTBIZ_WEBHOOK_SECRET: &str = "botbiz-whsec";

async fn a_campaign_reaches_botbiz_with_its_bearer_key_and_its_rate_limit_holds_the_lane(
    db: TestDb,
) {
    let botbiz = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/whatsapp/messages"))
        .and(header("authorization", "Bearer bb_key"))
        .respond_with(Platform {
            to: |body| body["to"].as_str().unwrap_or_default().to_owned(),
            accepted: |digits| {
                ResponseTemplate::new(200).set_body_json(json!({"id": format!("m-{digits}"),
                                                                "status": "queued"}))
            },
            refused: || {
                ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "code": "invalid_request", "message": "Invalid phone number", "status": 400}}))
            },
            rate_limited: || {
                let reset = chrono::Utc::now().timestamp() + 1;
                ResponseTemplate::new(429)
                    .insert_header("X-RateLimit-Limit", "60")
                    .insert_header("X-RateLimit-Remaining", "0")
                    .insert_header("X-RateLimit-Reset", reset.to_string().as_str())
                    .set_body_json(json!({"error": {"code": "rate_limited",
                        "message": "Too many requests", "status": 429}}))
            },
            attempts: Mutex::default(),
        })
        .mount(&botbiz)
        .await;
    let api = Api::start(db).await;
    // The free plan's 60 requests a minute is a new sender's pace unless it sets its own.
    let default = api
        .post(
            "/v1/senders",
            json!({"name": "Free plan", "provider": "botbiz",
                   "provider_config": {"api_key": "bb_key"}}),
        )
        .await;
    assert_eq!(default.expect(201)["pacing"]["rate_per_minute"], 60);
    let sender = created_sender(
        &api,
        "botbiz",
        json!({"api_key": "bb_key", "webhook_secret": BOTBIZ_WEBHOOK_SECRET,
               "api_base": format!("{}/v1", botbiz.uri())}),
    )
    .await;
    recipients(&api).await;
    let (campaign, stats) = campaign_completed(&api, &sender).await;
    assert_eq!(counts(&stats), [2, 0, 0, 1], "{stats}");
    assert_eq!(
        message_to(&api, &campaign, REFUSED).await["error"],
        "HTTP 400: invalid_request: Invalid phone number"
    );
    let sent = requests_for(&botbiz, "201012345611").await;
    assert_eq!(
        json_of(&sent[0]),
        json!({"to": JANE, "type": "text", "content": "Hi Jane!"})
    );
    assert_eq!(requests_for(&botbiz, "201012345613").await.len(), 2);
    let sara = message_to(&api, &campaign, RATE_LIMITED).await;
    assert_eq!(sara["status"], "sent", "{sara}");

    // Botbiz's webhooks: the documented inbound message, and a delivery report.
    let received = json!({"id": "evt_12345", "type": "whatsapp.message.received",
        "created": 1_681_036_800,
        "data": {"account_id": "wha_67890", "message_id": "msg_54321", "from": "+201012345688",
                 "type": "text", "content": "Hello, I need help with my order.",
                 "timestamp": "2023-04-09T10:00:00Z"}});
    let signature = hex_hmac(BOTBIZ_WEBHOOK_SECRET, &received.to_string());
    let forged = callback(
        &api,
        &sender,
        &received,
        &[("X-Botbiz-Signature", "0".repeat(64))],
    )
    .await;
    assert_eq!(forged["status"], 401, "{forged}");
    let answered = callback(
        &api,
        &sender,
        &received,
        &[("X-Botbiz-Signature", signature.clone())],
    )
    .await;
    assert_eq!(answered["body"]["inbound"], 1, "{answered}");
    // Delivered twice (Botbiz retrying): recorded once.
    let again = callback(
        &api,
        &sender,
        &received,
        &[("X-Botbiz-Signature", signature)],
    )
    .await;
    assert_eq!(again["status"], 200);
    let inbound = api.get("/v1/messages?direction=inbound").await;
    assert_eq!(inbound.expect(200)["total"], 1, "{}", inbound.body);
    let delivered = json!({"id": "evt_2", "type": "whatsapp.message.delivered",
        "created": 1_681_036_900, "data": {"message_id": "m-201012345611"}});
    let signature = format!(
        "sha256={}",
        hex_hmac(BOTBIZ_WEBHOOK_SECRET, &delivered.to_string())
    );
    let answered = callback(
        &api,
        &sender,
        &delivered,
        &[("X-Botbiz-Signature", signature)],
    )
    .await;
    assert_eq!(answered["status"], 200, "{answered}");
    let stats = api.get(&format!("/v1/campaigns/{campaign}/stats")).await;
    assert_eq!(counts(stats.expect(200)), [2, 1, 0, 1]);
    api.stop().await;
}

async fn a_campaign_reaches_chattu_in_digits_and_its_webhook_key_is_checked(db: TestDb) {
    let chattu = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/send-message"))
        .and(header("x-api-key", "account-key"))
        .respond_with(Platform {
            to: |body| body["number"].as_str().unwrap_or_default().to_owned(),
            accepted: |digits| {
                ResponseTemplate::new(200).set_body_json(json!({"success": true,
                    "message": {"id": {"_serialized": format!("m-{digits}")}, "body": "Hi",
                                "timestamp": 1_699_123_456}}))
            },
            // Chattu answers some refusals with 200 and `success: false`.
            refused: || {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"success": false, "error": "Number is not on WhatsApp"}))
            },
            rate_limited: || {
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"error": "Rate limit exceeded"}))
            },
            attempts: Mutex::default(),
        })
        .mount(&chattu)
        .await;
    let api = Api::start(db).await;
    let sender = created_sender(
        &api,
        "chattu",
        json!({"api_key": "account-key", "client_id": "client-1",
               "client_api_key": "client-key", "api_base": chattu.uri()}),
    )
    .await;
    recipients(&api).await;
    let (campaign, stats) = campaign_completed(&api, &sender).await;
    assert_eq!(counts(&stats), [2, 0, 0, 1], "{stats}");
    assert_eq!(
        message_to(&api, &campaign, REFUSED).await["error"],
        "Number is not on WhatsApp"
    );
    let jane = message_to(&api, &campaign, JANE).await;
    assert_eq!(jane["provider_message_id"], "m-201012345611", "{jane}");
    let sent = requests_for(&chattu, "201012345611").await;
    assert_eq!(
        json_of(&sent[0]),
        json!({"clientId": "client-1", "number": "201012345611", "message": "Hi Jane!"})
    );

    let received = json!({"event": "message_received", "data": {"from": "201012345688",
        "to": "client-1", "body": "Hello, this is a test message",
        "message": "Hello, this is a test message", "timestamp": 1_699_123_456_789_i64,
        "type": "received_message"}});
    let wrong = callback(
        &api,
        &sender,
        &received,
        &[("X-Api-Key", "account-key".to_owned())],
    )
    .await;
    assert_eq!(wrong["status"], 401, "the client's key, not the account's");
    let answered = callback(
        &api,
        &sender,
        &received,
        &[("X-Api-Key", "client-key".to_owned())],
    )
    .await;
    assert_eq!(answered["body"]["inbound"], 1, "{answered}");
    let inbound = api.get("/v1/messages?direction=inbound").await;
    assert_eq!(inbound.expect(200)["data"][0]["from"], "+201012345688");
    api.stop().await;
}

async fn a_campaign_reaches_mavibot_with_its_key_in_the_path_and_its_webhook_needs_the_token(
    db: TestDb,
) {
    let mavibot = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/mv-key-1/whatsapp_message"))
        .respond_with(Platform {
            to: |body| body["phone"].as_str().unwrap_or_default().to_owned(),
            accepted: |digits| {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"status": "success", "id": format!("m-{digits}")}))
            },
            refused: || {
                ResponseTemplate::new(200).set_body_json(
                    json!({"status": "error", "description": "the client is not found"}),
                )
            },
            rate_limited: || ResponseTemplate::new(429).insert_header("Retry-After", "1"),
            attempts: Mutex::default(),
        })
        .mount(&mavibot)
        .await;
    let api = Api::start(db).await;
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Mavibot", "provider": "mavibot",
                   "provider_config": {"api_key": "mv-key-1", "whatsapp_bot_id": 4242,
                                       "api_base": mavibot.uri()},
                   "pacing": {"rate_per_minute": 60000}}),
        )
        .await;
    let created = created.expect(201).clone();
    let sender = created["id"].as_str().unwrap().to_owned();
    let token = created["callback_secret"].as_str().unwrap().to_owned();
    assert_eq!(created["provider_config"]["api_key"], "***");
    recipients(&api).await;
    let (campaign, stats) = campaign_completed(&api, &sender).await;
    assert_eq!(counts(&stats), [2, 0, 0, 1], "{stats}");
    assert_eq!(
        message_to(&api, &campaign, REFUSED).await["error"],
        "the client is not found"
    );
    let sent = requests_for(&mavibot, "201012345611").await;
    assert_eq!(
        json_of(&sent[0]),
        json!({"phone": "201012345611", "whatsapp_bot_id": 4242, "message": "Hi Jane!"})
    );

    // Mavibot's webhook for the bot's message: delivered; without the token, refused.
    let delivered = json!({"id": "m-201012345611", "client": {"id": 7,
        "recepient": "201012345611@s.whatsapp.net", "client_type": 6, "name": "Jane"},
        "message": "Hi Jane!", "attachments": [], "message_id": 3, "project_id": 1,
        "is_input": 0, "delivered": 1, "error_message": ""});
    let post = |query: String, body: &Value| {
        api.client_without_token(Method::POST, &format!("/v1/callbacks/{sender}{query}"))
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let refused = api.send(post("?token=a-guess".into(), &delivered)).await;
    assert_eq!(refused.status, 401);
    let refused = api.send(post(String::new(), &delivered)).await;
    assert_eq!(refused.status, 401);
    let answered = api.send(post(format!("?token={token}"), &delivered)).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    let stats = api.get(&format!("/v1/campaigns/{campaign}/stats")).await;
    assert_eq!(counts(stats.expect(200)), [2, 1, 0, 1]);
    let written = json!({"id": 901, "client": {"id": 8, "recepient": "201012345688@s.whatsapp.net",
        "client_type": 6, "name": "Layla"}, "message": "Hello", "is_input": 1, "delivered": 1});
    let answered = api.send(post(format!("?token={token}"), &written)).await;
    assert_eq!(answered.body["inbound"], 1, "{}", answered.body);
    api.stop().await;
}

/// MazBot's login: a new token each time (`t1`, `t2`, …), for the account's apikey only.
struct MazbotLogin(std::sync::atomic::AtomicUsize);

impl Respond for MazbotLogin {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if body != json!({"email": "ops@example.com", "password": "pw"}) {
            return ResponseTemplate::new(401).set_body_json(
                json!({"success": false, "message": "Unauthorized access", "data": []}),
            );
        }
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({"success": true,
            "message": "Login successfully", "data": {"id": 5, "token": format!("t{n}")}}))
    }
}

/// A MazBot account's apikey of its own: Herald keeps one token per account in the process, and
/// mock servers' addresses are reused from test to test.
fn mazbot_key() -> String {
    format!("mz-{}", uuid::Uuid::new_v4().simple())
}

async fn mazbot_server(api_key: &str) -> MockServer {
    let mazbot = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/login"))
        .and(header("apikey", api_key))
        .respond_with(MazbotLogin(std::sync::atomic::AtomicUsize::new(0)))
        .mount(&mazbot)
        .await;
    mazbot
}

async fn mazbot_sender(api: &Api, mazbot: &MockServer, api_key: &str) -> String {
    created_sender(
        api,
        "mazbot",
        json!({"api_key": api_key, "email": "ops@example.com", "password": "pw",
               "templates": {"spring_sale": 42}, "api_base": format!("{}/api", mazbot.uri())}),
    )
    .await
}

async fn templates_reach_mazbot_its_refusals_count_and_an_expired_token_is_renewed_once(
    db: TestDb,
) {
    let api_key = mazbot_key();
    let mazbot = mazbot_server(&api_key).await;
    // The first token has expired by the time it is used.
    Mock::given(method("POST"))
        .and(path("/api/whatsapp/send-template"))
        .and(header("authorization", "Bearer t1"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"success": false, "message": "Token is expired", "data": []}),
            ),
        )
        .mount(&mazbot)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/whatsapp/send-template"))
        .and(header("authorization", "Bearer t2"))
        .and(header("apikey", api_key.as_str()))
        .respond_with(Platform {
            to: |_| String::new(),
            accepted: |digits| {
                ResponseTemplate::new(200).set_body_json(json!({"success": true,
                    "message": "Created successfully",
                    "data": {"message_id": format!("ABEG{digits}"), "status": "sent"}}))
            },
            refused: || {
                ResponseTemplate::new(422).set_body_json(json!({"success": false,
                    "message": "Validation failed",
                    "data": {"mobile": ["The mobile format is invalid."]}}))
            },
            rate_limited: || {
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"success": false,
                        "message": "Too many requests. Please wait before retrying.", "data": []}))
            },
            attempts: Mutex::default(),
        })
        .mount(&mazbot)
        .await;
    let api = Api::start(db).await;
    let sender = mazbot_sender(&api, &mazbot, &api_key).await;
    let shown = api.get(&format!("/v1/senders/{sender}")).await;
    let config = &shown.expect(200)["provider_config"];
    assert_eq!(
        (&config["api_key"], &config["password"]),
        (&json!("***"), &json!("***"))
    );
    let template = api
        .post(
            "/v1/templates",
            json!({"name": "Spring", "content": "Hi <<name|there>>",
                   "whatsapp": {"name": "spring_sale", "language": "en",
                                "body_params": ["<<name|there>>"]}}),
        )
        .await
        .id();
    recipients(&api).await;
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": sender, "template_id": template,
                   "audience": {"type": "tags", "tags": ["spring"]}}),
        )
        .await
        .id();
    api.post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    let stats = api
        .wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(counts(&stats), [2, 0, 0, 1], "{stats}");
    let jane = message_to(&api, &campaign, JANE).await;
    assert_eq!(jane["provider_message_id"], "ABEG201012345611");
    assert_eq!(
        message_to(&api, &campaign, REFUSED).await["error"],
        "HTTP 422: Validation failed: The mobile format is invalid."
    );
    // Throttled once (Retry-After), then sent.
    assert_eq!(
        message_to(&api, &campaign, RATE_LIMITED).await["status"],
        "sent"
    );
    let requests = mazbot.received_requests().await.unwrap();
    let logins = requests
        .iter()
        .filter(|request| request.url.path() == "/api/login")
        .count();
    assert_eq!(logins, 2, "a login, and one more after the 401");
    let sent = requests
        .iter()
        .rfind(|request| {
            request.url.path() == "/api/whatsapp/send-template"
                && String::from_utf8_lossy(&request.body).contains("201012345611")
        })
        .unwrap();
    let form = String::from_utf8_lossy(&sent.body);
    for (field, value) in [
        ("template_id", "42"),
        ("mobile", "201012345611"),
        ("body_matchs[1]", "input_value"),
        ("body_values[1]", "Jane"),
    ] {
        assert!(
            form.contains(&format!("name=\"{field}\"\r\n\r\n{value}\r\n")),
            "{field}={value} in {form}"
        );
    }
    assert!(!form.contains("body_values[0]"), "1-based: {form}");
    api.stop().await;
}

/// MazBot's chat rooms and their messages, as its polling flow reads them.
async fn mount_rooms(mazbot: &MockServer, messages: Value) {
    mazbot.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/login"))
        .respond_with(MazbotLogin(std::sync::atomic::AtomicUsize::new(0)))
        .mount(mazbot)
        .await;
    let updated = messages
        .as_array()
        .and_then(|all| all.last())
        .map(|last| last["created_at"].clone())
        .unwrap_or_default();
    Mock::given(method("GET"))
        .and(path("/api/chat-rooms"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": true,
            "message": "Chat retrieved successfully",
            "data": {"chat_rooms": [{"id": 12, "name": "John Doe", "phone": "201012345678",
                                     "last_message": "Hello there", "updated_at": updated}],
                     "total_unread_messages": 1, "next_page_url": null}})),
        )
        .mount(mazbot)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/message/12"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": true,
            "message": "Chat retrieved successfully", "data": messages})),
        )
        .mount(mazbot)
        .await;
}

fn mazbot_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

async fn mazbots_inbound_messages_are_polled_once_across_a_restart(db: TestDb) {
    let api_key = mazbot_key();
    let mazbot = mazbot_server(&api_key).await;
    let api = Api::start(db).await;
    let before = chrono::Utc::now() - chrono::Duration::hours(1);
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    // An old message (from before the sender came to Herald), Herald's own, and a new one.
    let first = json!([
        {"id": 4824, "type": 2, "message": "Old news", "is_seen": 1,
         "created_at": mazbot_time(before)},
        {"id": 4825, "type": 2, "message": "Yes, please send the invoice pdf", "is_seen": 1,
         "created_at": mazbot_time(after)},
        {"id": 4826, "type": 1, "message": "Here is your requested document", "is_seen": 1,
         "created_at": mazbot_time(after)}]);
    mount_rooms(&mazbot, first.clone()).await;
    let sender = mazbot_sender(&api, &mazbot, &api_key).await;
    let inbound = api
        .wait_for("/v1/messages?direction=inbound", |page| page["total"] == 1)
        .await;
    let message = &inbound["data"][0];
    assert_eq!(
        (&message["from"], &message["body"]),
        (
            &json!("+201012345678"),
            &json!("Yes, please send the invoice pdf")
        )
    );
    let john = api.get("/v1/contacts?search=John").await;
    assert_eq!(john.expect(200)["data"][0]["phone"], "+201012345678");
    // Where the poll left off is stored with what it brought.
    let sender_id: herald::domain::ids::SenderId = sender.parse().unwrap();
    let cursors = {
        let mut conn = api.state().db.read().await.unwrap();
        herald::store::cursors::of_sender(conn.conn(), sender_id)
            .await
            .unwrap()
    };
    assert_eq!(cursors.get("room:12").map(String::as_str), Some("4826"));
    assert!(cursors.contains_key("rooms_updated_at"), "{cursors:?}");

    // John wrote, so his 24-hour window is open: free-form text goes to his conversation.
    Mock::given(method("POST"))
        .and(path("/api/send-message"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"success": true, "message": "Created successfully", "data": ""}),
            ),
        )
        .mount(&mazbot)
        .await;
    let reply = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+201012345678", "content": "The invoice is attached"}),
        )
        .await;
    let reply = reply.id();
    api.wait_for(&format!("/v1/messages/{reply}"), |m| m["status"] == "sent")
        .await;
    let requests = mazbot.received_requests().await.unwrap();
    let lookup = requests.iter().find(|request| {
        request.url.path() == "/api/chat-rooms"
            && request
                .url
                .query_pairs()
                .any(|(name, value)| name == "q" && value == "201012345678")
    });
    assert!(lookup.is_some(), "the conversation is found by the number");
    let sent = requests
        .iter()
        .find(|request| request.url.path() == "/api/send-message")
        .expect("the text was sent");
    let form = String::from_utf8_lossy(&sent.body);
    for (field, value) in [
        ("receiver_id", "12"),
        ("message", "The invoice is attached"),
    ] {
        assert!(
            form.contains(&format!("name=\"{field}\"\r\n\r\n{value}\r\n")),
            "{field}={value} in {form}"
        );
    }

    // After a restart the same room has one more message: only it is new.
    let mut second = first.as_array().unwrap().clone();
    second.push(
        json!({"id": 4827, "type": 2, "message": "Thanks!", "is_seen": 0,
                       "created_at": mazbot_time(after + chrono::Duration::seconds(1))}),
    );
    mount_rooms(&mazbot, Value::Array(second)).await;
    let api = api.restart().await;
    let inbound = api
        .wait_for("/v1/messages?direction=inbound", |page| page["total"] == 2)
        .await;
    assert_eq!(inbound["data"][0]["body"], "Thanks!", "{inbound}");
    // The engine's next polls bring nothing again.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = api.get("/v1/messages?direction=inbound").await;
    assert_eq!(again.expect(200)["total"], 2);
    api.stop().await;
}

/// Each platform's configuration names every missing field at once, and never echoes a secret.
async fn each_platforms_configuration_names_every_missing_field(db: TestDb) {
    let api = Api::start(db).await;
    for (provider, config, fields) in [
        (
            "zagely",
            json!({"public_key": "key"}),
            vec!["provider_config.secret_key", "provider_config.public_key"],
        ),
        ("botbiz", json!({}), vec!["provider_config.api_key"]),
        (
            "mazbot",
            json!({"api_key": "account-key", "poll_interval_s": 2}),
            vec![
                "provider_config.email",
                "provider_config.password",
                "provider_config.poll_interval_s",
            ],
        ),
        (
            "mavibot",
            json!({"api_key": "has/slash"}),
            vec!["provider_config.api_key", "provider_config.whatsapp_bot_id"],
        ),
        (
            "chattu",
            json!({"api_key": "account-key"}),
            vec!["provider_config.client_id", "provider_config.api_base"],
        ),
    ] {
        let refused = api
            .post(
                "/v1/senders",
                json!({"name": provider, "provider": provider, "provider_config": config}),
            )
            .await;
        let errors = &refused.expect_error(422, "validation_failed")["errors"];
        let mut named: Vec<&str> = errors
            .as_object()
            .map(|errors| errors.keys().map(String::as_str).collect())
            .unwrap_or_default();
        named.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(named, fields, "{provider}: {}", refused.body);
        assert!(
            !refused.body.to_string().contains("account-key"),
            "{provider} echoes a secret"
        );
    }
    api.stop().await;
}

dialect_tests!(
    a_campaign_reaches_zagely_with_its_key_pair_and_its_signed_webhooks_count,
    a_campaign_reaches_botbiz_with_its_bearer_key_and_its_rate_limit_holds_the_lane,
    a_campaign_reaches_chattu_in_digits_and_its_webhook_key_is_checked,
    a_campaign_reaches_mavibot_with_its_key_in_the_path_and_its_webhook_needs_the_token,
    templates_reach_mazbot_its_refusals_count_and_an_expired_token_is_renewed_once,
    mazbots_inbound_messages_are_polled_once_across_a_restart,
    each_platforms_configuration_names_every_missing_field,
);
