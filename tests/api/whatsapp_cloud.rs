//! The `whatsapp_cloud` provider against a mock Graph API on 127.0.0.1: Meta's request bodies,
//! its webhook (challenge, signature, statuses out of order, inbound messages, stop), and what
//! each class of Meta's errors does to a campaign.

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::Api;
use crate::common::TestDb;

const MESSAGES_PATH: &str = "/v23.0/1122334455667/messages";
const APP_SECRET: &str = "app-secret-1";
const VERIFY_TOKEN: &str = "verify-token-1";

/// Meta's answer to a send: `wamid.<digits of to>`, or the error a recipient is set up for.
/// Each mock server has its own count of sends per recipient.
#[derive(Default)]
struct Graph {
    sends_to: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Graph {
    /// How many sends to `to` this mock has seen, this one included.
    fn attempts_to(&self, to: &str) -> usize {
        let mut sends = self
            .sends_to
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = sends.entry(to.to_owned()).or_default();
        *count += 1;
        *count
    }
}

impl Respond for Graph {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let refusal = |status: u16, code: i64, message: &str| {
            ResponseTemplate::new(status).set_body_json(json!({"error": {
                "message": format!("(#{code}) {message}"), "type": "OAuthException",
                "code": code, "fbtrace_id": "trace"}}))
        };
        // A typing indicator is answered a minute late: it must never hold the send.
        if body.get("typing_indicator").is_some() {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"success": true}))
                .set_delay(std::time::Duration::from_secs(60));
        }
        if body["template"]["name"] == "missing_template" {
            return refusal(
                404,
                132001,
                "Template name does not exist in the translation",
            );
        }
        match to.as_str() {
            // Pair rate limit on the first attempt only: the recipient waits, the rest go on.
            "201012345601" if self.attempts_to(&to) == 1 => {
                refusal(400, 131056, "Pair rate limit hit").insert_header("Retry-After", "1")
            }
            "201012345602" => refusal(400, 131026, "Message undeliverable"),
            "201012345699" => refusal(400, 131048, "Spam rate limit hit"),
            "201012345698" => refusal(400, 131050, "User has stopped marketing messages"),
            _ => ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": format!("wamid.{to}")}]})),
        }
    }
}

async fn graph() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(header("authorization", "Bearer EAAG-test-token"))
        .respond_with(Graph::default())
        .mount(&graph)
        .await;
    graph
}

async fn whatsapp_sender(api: &Api, graph: &MockServer) -> String {
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Store line", "provider": "whatsapp_cloud",
                   "provider_config": {"phone_number_id": "1122334455667",
                                       "access_token": "EAAG-test-token",
                                       "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
                                       "api_base": graph.uri(), "api_version": "v23.0"}}),
        )
        .await;
    created.expect(201);
    created.id()
}

fn meta_signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Meta's envelope around one change of the `messages` field.
fn envelope(value: Value) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": value}]}]})
    .to_string()
}

async fn webhook(api: &Api, sender: &str, body: String, signature: &str) -> crate::Reply {
    api.send(
        api.client_without_token(Method::POST, &format!("/v1/callbacks/{sender}"))
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body),
    )
    .await
}

/// Each phone writes to the number, which opens its customer-service window.
async fn write_in(api: &Api, sender: &str, phones: &[&str]) {
    let messages: Vec<Value> = phones
        .iter()
        .enumerate()
        .map(|(n, phone)| {
            json!({"from": phone.trim_start_matches('+'), "id": format!("wamid.hello{}.{n}", phone.trim_start_matches('+')),
                   "timestamp": chrono::Utc::now().timestamp().to_string(),
                   "type": "text", "text": {"body": "Hello"}})
        })
        .collect();
    let body = envelope(json!({"messaging_product": "whatsapp", "messages": messages}));
    webhook(api, sender, body.clone(), &meta_signature(&body))
        .await
        .expect(200);
}

async fn start_campaign(api: &Api, sender: &str, tag: &str) -> String {
    let id = api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": sender, "content": "Hi <<name|there>>!",
                   "audience": {"type": "tags", "tags": [tag]}}),
        )
        .await
        .id();
    api.post_empty(&format!("/v1/campaigns/{id}/start"))
        .await
        .expect(200);
    id
}

async fn a_campaign_goes_out_in_metas_json_and_metas_webhook_counts(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    let shown = api.get(&format!("/v1/senders/{sender}")).await;
    let config = &shown.expect(200)["provider_config"];
    for secret in ["access_token", "app_secret", "verify_token"] {
        assert_eq!(config[secret], "***", "{secret} is never shown");
    }
    assert_eq!(config["phone_number_id"], "1122334455667");

    for (phone, name) in [
        ("+201012345611", "Jane"),
        ("+201012345612", "Omar"),
        ("+201012345613", "Sara"),
    ] {
        api.contact(phone, json!({"name": name, "tags": ["spring"]}))
            .await;
    }
    // Jane and Omar wrote today; Sara never did: free-form text may not reach her.
    write_in(&api, &sender, &["+201012345611", "+201012345612"]).await;
    let draft = api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": sender, "content": "Hi <<name|there>>!",
                   "audience": {"type": "tags", "tags": ["spring"]}}),
        )
        .await;
    let warning = &draft.expect(201)["warnings"][0];
    assert_eq!(
        warning["code"], "outside_customer_service_window",
        "{}",
        draft.body
    );
    assert_eq!(warning["count"], 1, "only Sara: {}", draft.body);
    let campaign = draft.id();
    api.post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    let stats = api
        .wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(
        (
            stats["sent"].as_i64(),
            stats["skipped"].as_i64(),
            stats["failed"].as_i64()
        ),
        (Some(2), Some(1), Some(0)),
        "{stats}"
    );
    let skipped = api
        .get(&format!("/v1/campaigns/{campaign}/messages?status=skipped"))
        .await;
    let skipped = &skipped.expect(200)["data"][0];
    assert_eq!(skipped["to"], "+201012345613");
    assert_eq!(skipped["error"], "outside_customer_service_window");
    assert!(
        graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|request| !String::from_utf8_lossy(&request.body).contains("201012345613")),
        "nothing was sent to Sara"
    );
    let requests = graph.received_requests().await.unwrap();
    let jane = requests
        .iter()
        .map(|request| serde_json::from_slice::<Value>(&request.body).unwrap())
        .find(|body| body["to"] == "201012345611")
        .expect("Jane's send");
    assert_eq!(
        jane,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual",
               "to": "201012345611", "type": "text",
               "text": {"preview_url": false, "body": "Hi Jane!"}})
    );

    // Meta verifies the webhook with a GET before it sends anything.
    let challenge = |token: &str| {
        api.client_without_token(
            Method::GET,
            &format!(
                "/v1/callbacks/{sender}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=8472"
            ),
        )
        .send()
    };
    let answered = challenge(VERIFY_TOKEN).await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "8472");
    assert_eq!(challenge("a-guess").await.unwrap().status(), 403);

    // Read overtakes delivered; a failure carries Meta's code and title.
    let statuses = envelope(json!({"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1122334455667"},
        "statuses": [
            {"id": "wamid.201012345611", "status": "read", "timestamp": "1767000020",
             "recipient_id": "201012345611", "pricing": {"billable": true}},
            {"id": "wamid.201012345611", "status": "delivered", "timestamp": "1767000010",
             "recipient_id": "201012345611"},
            {"id": "wamid.201012345612", "status": "failed", "timestamp": "1767000011",
             "recipient_id": "201012345612",
             "errors": [{"code": 131026, "title": "Message undeliverable"}]}]}));
    webhook(&api, &sender, statuses.clone(), "sha256=00")
        .await
        .expect_error(401, "unauthenticated");
    let unchanged = api.get(&format!("/v1/campaigns/{campaign}/stats")).await;
    assert_eq!(
        unchanged.expect(200)["read"],
        0,
        "a forged webhook changes nothing"
    );
    let signature = meta_signature(&statuses);
    webhook(&api, &sender, statuses.clone(), &signature)
        .await
        .expect(200);
    // Meta retries a delivery it thinks was lost: nothing counts twice.
    webhook(&api, &sender, statuses, &signature)
        .await
        .expect(200);
    let stats = api.get(&format!("/v1/campaigns/{campaign}/stats")).await;
    let stats = stats.expect(200);
    assert_eq!(
        (
            stats["sent"].as_i64(),
            stats["delivered"].as_i64(),
            stats["read"].as_i64(),
            stats["failed"].as_i64()
        ),
        (Some(2), Some(1), Some(1), Some(1)),
        "{stats}"
    );
    let failed = api
        .get(&format!("/v1/campaigns/{campaign}/messages?status=failed"))
        .await;
    assert_eq!(
        failed.expect(200)["data"][0]["error"],
        "131026 Message undeliverable"
    );

    // A new number writes: its contact is created with its profile name.
    let inbound = envelope(json!({"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1122334455667"},
        "contacts": [{"profile": {"name": "Layla"}, "wa_id": "201012345688"}],
        "messages": [
            {"from": "201012345688", "id": "wamid.in1", "timestamp": "1767000030",
             "type": "text", "text": {"body": "What does the sale cover?"}},
            {"from": "201012345688", "id": "wamid.in2", "timestamp": "1767000031",
             "type": "button", "button": {"text": "Stop promotions", "payload": "STOP"}}]}));
    let recorded = webhook(&api, &sender, inbound.clone(), &meta_signature(&inbound)).await;
    assert_eq!(recorded.expect(200)["inbound"], 2);
    let received = api.get("/v1/messages?direction=inbound&per_page=200").await;
    let bodies: Vec<&str> = received.expect(200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["body"].as_str())
        .collect();
    assert!(bodies.contains(&"What does the sale cover?"), "{bodies:?}");
    assert!(bodies.contains(&"Stop promotions"), "{bodies:?}");
    let layla = api.get("/v1/contacts?search=Layla").await;
    let layla = &layla.expect(200)["data"][0];
    assert_eq!(layla["phone"], "+201012345688");
    let conversation = api
        .get(&format!(
            "/v1/contacts/{}/messages",
            layla["id"].as_str().unwrap()
        ))
        .await;
    let conversation = conversation.expect(200);
    assert_eq!(conversation["total"], 2, "{conversation}");
    let newest = &conversation["data"][0];
    assert_eq!(newest["direction"], "inbound");
    assert_eq!(newest["from"], "+201012345688");
    assert_eq!(newest["body"], "Stop promotions");
    assert_eq!(newest["received_at"], "2025-12-29T09:20:31Z");

    // The person stops marketing messages in WhatsApp itself.
    let stop = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "user_preferences", "value": {"messaging_product": "whatsapp",
         "user_preferences": [{"wa_id": "201012345688", "category": "marketing_messages",
                               "value": "stop", "timestamp": 1767000040}]}}]}]})
    .to_string();
    webhook(&api, &sender, stop.clone(), &meta_signature(&stop))
        .await
        .expect(200);
    let layla = api
        .get(&format!("/v1/contacts/{}", layla["id"].as_str().unwrap()))
        .await;
    assert!(
        layla.expect(200)["opted_out_at"].is_string(),
        "{}",
        layla.body
    );
    api.stop().await;
}

async fn metas_errors_hold_a_recipient_fail_a_message_or_pause_the_sender(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    let phones = [
        "+201012345601",
        "+201012345602",
        "+201012345603",
        "+201012345604",
        "+201012345698",
    ];
    for phone in phones {
        api.contact(phone, json!({"tags": ["errors"]})).await;
    }
    write_in(&api, &sender, &phones).await;
    let campaign = start_campaign(&api, &sender, "errors").await;
    let stats = api
        .wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(
        (stats["sent"].as_i64(), stats["failed"].as_i64()),
        (Some(3), Some(2)),
        "{stats}"
    );
    let failed = api
        .get(&format!("/v1/campaigns/{campaign}/messages?status=failed"))
        .await;
    let errors: Vec<&str> = failed.expect(200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["error"].as_str())
        .collect();
    assert!(
        errors.contains(&"131026 Message undeliverable"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error.starts_with("131050")),
        "{errors:?}"
    );
    // 131050: the person stopped marketing messages, so the contact is opted out too.
    let stopped = api.get("/v1/contacts?search=201012345698").await;
    assert!(
        stopped.expect(200)["data"][0]["opted_out_at"].is_string(),
        "{}",
        stopped.body
    );
    // The held recipient was tried again only after the others had gone out.
    let order: Vec<String> = graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            body["to"].as_str().unwrap().to_owned()
        })
        .collect();
    let held = order
        .iter()
        .rposition(|to| to == "201012345601")
        .expect("the held recipient");
    for other in ["201012345603", "201012345604"] {
        let sent = order.iter().position(|to| to == other).unwrap();
        assert!(
            sent < held,
            "{other} waited for the held recipient: {order:?}"
        );
    }

    // Meta's spam rate limit: the sender's campaign is paused with the reason.
    api.contact("+201012345699", json!({"tags": ["spam"]}))
        .await;
    write_in(&api, &sender, &["+201012345699"]).await;
    let blocked = start_campaign(&api, &sender, "spam").await;
    let paused = api
        .wait_for(&format!("/v1/campaigns/{blocked}"), |c| {
            c["status"] == "paused"
        })
        .await;
    let reason = paused["paused_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("131048"), "{paused}");
    api.stop().await;
}

async fn a_template_missing_at_meta_pauses_its_campaign_instead_of_failing_everyone(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    let template = api
        .post(
            "/v1/templates",
            json!({"name": "Missing", "content": "Hi",
                   "whatsapp": {"name": "missing_template", "language": "en_US"}}),
        )
        .await
        .id();
    for n in 0..5 {
        api.contact(&format!("+20101234570{n}"), json!({"tags": ["missing"]}))
            .await;
    }
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "Missing", "sender_id": sender, "template_id": template,
                   "audience": {"type": "tags", "tags": ["missing"]}}),
        )
        .await
        .id();
    api.post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    let paused = api
        .wait_for(&format!("/v1/campaigns/{campaign}"), |c| {
            c["status"] == "paused"
        })
        .await;
    assert!(
        paused["paused_reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("132001")),
        "{paused}"
    );
    let stats = api
        .wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
            s["pending"] == 5
        })
        .await;
    assert_eq!(stats["failed"], 0, "no recipient failed for it: {stats}");
    api.stop().await;
}

async fn a_template_campaign_sends_metas_template_rendered_per_contact(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    let whatsapp = json!({"name": "spring_sale", "language": "en_US",
                          "body_params": ["<<name|there>>", "<<code>>"],
                          "header": {"type": "image", "value": "https://cdn.example.com/spring.jpg"}});
    let refused = api
        .post(
            "/v1/templates",
            json!({"name": "Spring", "content": "Hi",
                   "whatsapp": {"name": "Spring Sale", "language": "english", "body_params": ["<<x"]}}),
        )
        .await;
    let errors = &refused.expect_error(422, "validation_failed")["errors"];
    for field in [
        "whatsapp.name",
        "whatsapp.language",
        "whatsapp.body_params.0",
    ] {
        assert!(errors[field].is_array(), "{field}: {errors}");
    }
    let template = api
        .post(
            "/v1/templates",
            json!({"name": "Spring", "content": "Hi <<name|there>>, use <<code>> today",
                   "whatsapp": whatsapp}),
        )
        .await;
    let created = template.expect(201);
    assert_eq!(created["whatsapp"], whatsapp);
    assert_eq!(created["variables"], json!(["name", "code"]));
    let template = template.id();

    api.contact("+201012345621", json!({"name": "Jane", "tags": ["tpl"]}))
        .await;
    api.contact("+201012345622", json!({"tags": ["tpl"]})).await;
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": sender, "template_id": template,
                   "variables": {"code": "SPRING"}, "audience": {"type": "tags", "tags": ["tpl"]}}),
        )
        .await;
    assert_eq!(
        campaign.expect(201)["whatsapp"],
        whatsapp,
        "copied at creation"
    );
    assert!(
        campaign.body.get("warnings").is_none(),
        "a template reaches everyone: {}",
        campaign.body
    );
    let campaign = campaign.id();
    api.post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    api.wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
        s["status"] == "completed" && s["sent"] == 2
    })
    .await;
    let bodies: Vec<Value> = graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect();
    let jane = bodies
        .iter()
        .find(|body| body["to"] == "201012345621")
        .expect("Jane's send");
    assert_eq!(
        jane,
        &json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "201012345621", "type": "template",
                "template": {"name": "spring_sale", "language": {"code": "en_US"},
                             "components": [
                                 {"type": "header", "parameters": [{"type": "image",
                                   "image": {"link": "https://cdn.example.com/spring.jpg"}}]},
                                 {"type": "body", "parameters": [
                                     {"type": "text", "text": "Jane"},
                                     {"type": "text", "text": "SPRING"}]}]}})
    );
    let unnamed = bodies
        .iter()
        .find(|body| body["to"] == "201012345622")
        .expect("the unnamed contact's send");
    assert_eq!(
        unnamed["template"]["components"][1]["parameters"][0]["text"], "there",
        "a fallback fills a parameter like the content"
    );
    api.stop().await;
}

async fn a_whatsapp_configuration_names_every_missing_field(db: TestDb) {
    let api = Api::start(db).await;
    let refused = api
        .post(
            "/v1/senders",
            json!({"name": "Store line", "provider": "whatsapp_cloud",
                   "provider_config": {"phone_number_id": "1122334455667"}}),
        )
        .await;
    let errors = &refused.expect_error(422, "validation_failed")["errors"];
    for field in ["access_token", "app_secret", "verify_token"] {
        assert!(
            errors[format!("provider_config.{field}")].is_array(),
            "{field}: {errors}"
        );
    }
    api.stop().await;
}

/// A message skipped outside the 24-hour window is no send: it takes nothing from the day's cap,
/// so the cap still lets the sender reach the people it may reach.
async fn a_window_skip_takes_nothing_from_the_daily_cap(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    api.patch(
        &format!("/v1/senders/{sender}"),
        json!({"pacing": {"daily_limit": 2}}),
    )
    .await
    .expect(200);
    for phone in ["+201012345621", "+201012345622", "+201012345623"] {
        api.contact(phone, json!({"tags": ["quiet"]})).await;
    }
    for phone in ["+201012345631", "+201012345632"] {
        api.contact(phone, json!({"tags": ["talkative"]})).await;
    }
    write_in(&api, &sender, &["+201012345631", "+201012345632"]).await;

    // Three free-form messages to people who never wrote: all skipped, none counted.
    let quiet = start_campaign(&api, &sender, "quiet").await;
    let stats = api
        .wait_for(&format!("/v1/campaigns/{quiet}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(stats["skipped"], 3, "{stats}");
    let today = api.get(&format!("/v1/senders/{sender}")).await;
    assert_eq!(today.body["today"]["sent"], 0, "{}", today.body);

    // So the cap of two still reaches both people inside their window.
    let talkative = start_campaign(&api, &sender, "talkative").await;
    let stats = api
        .wait_for(&format!("/v1/campaigns/{talkative}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(stats["sent"], 2, "{stats}");
    let today = api.get(&format!("/v1/senders/{sender}")).await;
    assert_eq!(today.body["today"]["sent"], 2, "{}", today.body);
}

/// With a typing delay, a message to someone who wrote is preceded by Meta's typing indicator,
/// answering their last message (which it marks read); an indicator Meta is slow to take does
/// not hold the message past its typing delay.
async fn typing_shows_in_answer_to_the_persons_last_message(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    api.patch(
        &format!("/v1/senders/{sender}"),
        json!({"pacing": {"typing_enabled": true, "typing_cps": 1000,
                          "typing_min_ms": 50, "typing_max_ms": 50}}),
    )
    .await
    .expect(200);
    write_in(&api, &sender, &["+201012345641"]).await;
    let asked = std::time::Instant::now();
    let reply = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+201012345641", "content": "Thanks for writing!"}),
        )
        .await;
    reply.expect(202);
    let sent = api
        .wait_for(&format!("/v1/messages/{}", reply.id()), |m| {
            m["status"] == "sent"
        })
        .await;
    assert_eq!(sent["status"], "sent");
    // The indicator's answer takes a minute, the provider's timeout 15 s.
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(10),
        "sent after {:?}",
        asked.elapsed()
    );

    let received = graph.received_requests().await.unwrap_or_default();
    let bodies: Vec<Value> = received
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(
        bodies[0],
        json!({"messaging_product": "whatsapp", "status": "read",
               "message_id": "wamid.hello201012345641.0",
               "typing_indicator": {"type": "text"}}),
        "the indicator comes first, answering the message the person wrote"
    );
    assert_eq!(bodies[1]["type"], "text");
    assert_eq!(bodies[1]["to"], "201012345641");
}

/// A single message made from a template with a WhatsApp part goes out as Meta's template,
/// rendered for its recipient, to someone who never wrote; the same text without the part is
/// skipped outside the window.
async fn a_single_message_from_a_template_goes_out_as_metas_template(db: TestDb) {
    let graph = graph().await;
    let api = Api::start(db).await;
    let sender = whatsapp_sender(&api, &graph).await;
    api.contact("+201012345651", json!({"name": "Jane"})).await;
    let template = api
        .post(
            "/v1/templates",
            json!({"name": "Order", "content": "Hi <<name|there>>, order <<order>> is ready",
                   "whatsapp": {"name": "order_ready", "language": "en_US",
                                "body_params": ["<<name|there>>", "<<order>>"],
                                "header": {"type": "text", "value": "Order <<order>>"}}}),
        )
        .await
        .id();
    let missing = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+201012345651", "template_id": template}),
        )
        .await;
    let errors = &missing.expect_error(422, "validation_failed")["errors"];
    assert!(errors["variables.order"].is_array(), "{errors}");

    let templated = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+201012345651", "template_id": template,
                   "variables": {"order": "A-17"}}),
        )
        .await;
    templated.expect(202);
    let free_form = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+201012345651", "content": "Hi, order A-17 is ready"}),
        )
        .await;
    free_form.expect(202);
    let sent = api
        .wait_for(&format!("/v1/messages/{}", templated.id()), |m| {
            m["status"] == "sent"
        })
        .await;
    assert_eq!(sent["body"], "Hi Jane, order A-17 is ready");
    let skipped = api
        .wait_for(&format!("/v1/messages/{}", free_form.id()), |m| {
            m["status"] == "skipped"
        })
        .await;
    assert_eq!(skipped["error"], "outside_customer_service_window");

    let received = graph.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1, "only the template went out");
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["type"], "template");
    assert_eq!(
        body["template"],
        json!({"name": "order_ready", "language": {"code": "en_US"}, "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "Order A-17"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Jane"},
                                            {"type": "text", "text": "A-17"}]}]})
    );
}

dialect_tests!(
    a_window_skip_takes_nothing_from_the_daily_cap,
    a_campaign_goes_out_in_metas_json_and_metas_webhook_counts,
    metas_errors_hold_a_recipient_fail_a_message_or_pause_the_sender,
    a_template_campaign_sends_metas_template_rendered_per_contact,
    a_template_missing_at_meta_pauses_its_campaign_instead_of_failing_everyone,
    a_whatsapp_configuration_names_every_missing_field,
    typing_shows_in_answer_to_the_persons_last_message,
    a_single_message_from_a_template_goes_out_as_metas_template,
);
