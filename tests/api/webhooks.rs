//! Outbound webhooks (API.md, "Outbound webhooks"): endpoints checked, events delivered signed
//! and in order per subject, retried on schedule (on a manual clock), `Retry-After`, `410`,
//! redirects not followed, tests and replays, the private-address guard.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use herald::clock::ManualClock;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::common::TestDb;
use super::{Api, unknown_id};

dialect_tests!(
    endpoints_are_checked_and_their_secret_is_shown_once,
    private_addresses_are_refused_unless_allowed,
    events_reach_an_endpoint_signed_and_in_order,
    a_failing_endpoint_is_retried_on_schedule_then_failed_and_replayed,
    retry_after_gone_and_redirects_are_honoured,
    a_slow_endpoint_holds_up_no_other,
);

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    raw: Bytes,
    body: Value,
}

#[derive(Default)]
struct Script {
    received: Vec<Received>,
    /// Answers to give, in order; 200 once they run out (or `otherwise`).
    answers: VecDeque<(u16, Vec<(&'static str, String)>)>,
    otherwise: Option<u16>,
    /// How long each answer takes.
    delay: Duration,
}

/// A webhook receiver on 127.0.0.1 that records what it gets and answers as scripted.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Script>>);

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn answer(&self, status: u16, headers: &[(&'static str, &str)]) {
        self.0.lock().unwrap().answers.push_back((
            status,
            headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ));
    }

    fn delay(&self, delay: Duration) {
        self.0.lock().unwrap().delay = delay;
    }

    fn otherwise(&self, status: Option<u16>) {
        self.0.lock().unwrap().otherwise = status;
    }

    fn received(&self) -> Vec<Received> {
        self.0.lock().unwrap().received.clone()
    }

    /// Waits until `count` requests have arrived.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} deliveries expected, {} arrived: {:?}",
                received.len(),
                received.iter().map(|r| &r.body["type"]).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    raw: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let delay = receiver.0.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut script = receiver.0.lock().unwrap();
    script.received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    });
    let (status, extra) = script
        .answers
        .pop_front()
        .unwrap_or((script.otherwise.unwrap_or(200), Vec::new()));
    let mut answer = HeaderMap::new();
    for (name, value) in extra {
        answer.insert(name, value.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), answer, "ok")
}

/// Checks a signature the way a receiver's own code would, without Herald's signer.
fn verify(secret: &str, received: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", received.id, received.timestamp).as_bytes());
    mac.update(&received.raw);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    received.signature.split(' ').any(|s| s == expected)
}

async fn endpoints_are_checked_and_their_secret_is_shown_once(db: TestDb) {
    let api = Api::start(db).await;
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/x", "events": ["*"]}),
            "url",
        ),
        (
            json!({"url": "https://u:p@example.com/x", "events": ["*"]}),
            "url",
        ),
        (json!({"url": "not a url", "events": ["*"]}), "url"),
        (
            json!({"url": "https://example.com/x", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["message.lost"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["mesage.*"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["*"], "description": "x".repeat(501)}),
            "description",
        ),
    ] {
        let reply = api.post("/v1/webhooks", body.clone()).await;
        let details = reply.expect_error(422, "validation_failed");
        assert!(
            details["errors"][field].is_array(),
            "{body} must name {field}: {details}"
        );
    }
    assert_eq!(api.get("/v1/webhooks").await.body["total"], 0);

    let (_receiver, url) = Receiver::start().await;
    let created = api
        .post(
            "/v1/webhooks",
            json!({"url": url, "events": ["message.delivered", "campaign.*"], "description": "CRM"}),
        )
        .await;
    let body = created.expect(201);
    let secret = body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{body}");
    let key = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(body["events"], json!(["message.delivered", "campaign.*"]));
    assert_eq!(body["enabled"], true);
    let id = created.id();

    let shown = api.get(&format!("/v1/webhooks/{id}")).await;
    assert!(shown.expect(200).get("secret").is_none(), "{}", shown.body);
    let listed = api.get("/v1/webhooks").await;
    assert_eq!(listed.body["total"], 1);
    assert!(listed.body["data"][0].get("secret").is_none());

    let changed = api
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"enabled": false, "events": ["*"], "description": null}),
        )
        .await;
    assert_eq!(changed.expect(200)["enabled"], false);
    assert_eq!(changed.body["events"], json!(["*"]));
    assert_eq!(changed.body["description"], Value::Null);
    api.patch(&format!("/v1/webhooks/{id}"), json!({"url": "gopher://x"}))
        .await
        .expect_error(422, "validation_failed");

    // Another workspace sees none of it; a token without the ability is refused.
    let other = api.key("globex", "*", None).await;
    let foreign = api
        .send(api.request_as(&other, reqwest::Method::GET, &format!("/v1/webhooks/{id}")))
        .await;
    foreign.expect_error(404, "not_found");
    let reader = api.key("acme", "campaigns.read", None).await;
    let refused = api
        .send(api.request_as(&reader, reqwest::Method::GET, "/v1/webhooks"))
        .await;
    assert_eq!(
        refused.expect_error(403, "insufficient_ability")["required_ability"],
        "webhooks.write"
    );
    api.get(&format!("/v1/webhooks/{}", unknown_id()))
        .await
        .expect_error(404, "not_found");

    api.delete(&format!("/v1/webhooks/{id}")).await.expect(204);
    api.get(&format!("/v1/webhooks/{id}"))
        .await
        .expect_error(404, "not_found");
}

async fn private_addresses_are_refused_unless_allowed(db: TestDb) {
    // The server as deployed: no private addresses.
    let api = Api::start_with(db, |config| config).await;
    for url in [
        "http://127.0.0.1:8080/hooks",
        "http://localhost/hooks",
        "http://api.localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://172.16.5.4/hooks",
        "http://192.168.0.10/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.1/hooks",
        "http://224.0.0.5/hooks",
        "http://0.0.0.0/hooks",
        "http://[::1]/hooks",
        "http://[fd00::1]/hooks",
        "http://[fe80::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
    ] {
        let reply = api
            .post("/v1/webhooks", json!({"url": url, "events": ["*"]}))
            .await;
        let details = reply.expect_error(422, "validation_failed");
        let message = details["errors"]["url"][0].as_str().unwrap_or_default();
        assert!(message.contains("private address"), "{url}: {details}");
    }
    // The http provider's gateway takes the same guard.
    let sender = api
        .post(
            "/v1/senders",
            json!({"name": "Gateway", "provider": "http",
                   "provider_config": {"url": "http://127.0.0.1:9/send"}}),
        )
        .await;
    let details = sender.expect_error(422, "validation_failed");
    assert!(
        details["errors"]["provider_config.url"][0]
            .as_str()
            .is_some_and(|m| m.contains("HERALD_ALLOW_PRIVATE_URLS")),
        "{details}"
    );
    api.stop().await;
}

async fn events_reach_an_endpoint_signed_and_in_order(db: TestDb) {
    let api = Api::start(db).await;
    let (receiver, url) = Receiver::start().await;
    let created = api
        .post(
            "/v1/webhooks",
            json!({"url": url, "events": ["message.*", "campaign.*"]}),
        )
        .await;
    let secret = created.expect(201)["secret"].as_str().unwrap().to_owned();
    let webhook = created.id();

    // A test goes to this endpoint although `webhook.test` is not among its events.
    api.post_empty(&format!("/v1/webhooks/{webhook}/test"))
        .await
        .expect(202);
    let test = receiver.wait_for(1).await.remove(0);
    assert_eq!(test.body["type"], "webhook.test");
    assert_eq!(test.body["data"]["webhook_id"], webhook.as_str());
    assert!(test.id.starts_with("evt_"), "{test:?}");
    assert!(verify(&secret, &test), "the signature verifies: {test:?}");
    let sent_at: i64 = test.timestamp.parse().unwrap();
    assert!((sent_at - chrono::Utc::now().timestamp()).abs() < 60);

    // A campaign of two through a sandbox that reports deliveries and reads.
    let sender = api
        .post(
            "/v1/senders",
            json!({"name": "Sandbox", "provider": "sandbox",
                   "provider_config": {"deliver_rate": 1, "read_rate": 1,
                                       "deliver_after_ms": 0, "read_after_ms": 0}}),
        )
        .await
        .id();
    for phone in ["+201012345601", "+201012345602"] {
        api.contact(phone, json!({"tags": ["hooks"]})).await;
    }
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "Hooks", "sender_id": sender, "content": "Hi",
                   "audience": {"type": "tags", "tags": ["hooks"]}}),
        )
        .await
        .id();
    api.post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    // Started and completed, and sent, delivered, read for each of the two.
    let received = receiver.wait_for(1 + 2 + 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = if receiver.received().len() > received.len() {
        receiver.received()
    } else {
        received
    };
    assert_eq!(received.len(), 9, "each event once");
    for delivery in &received {
        assert!(verify(&secret, delivery), "{delivery:?}");
    }
    let types_of = |subject: &str, field: &str| -> Vec<String> {
        received
            .iter()
            .filter(|r| r.body["data"][field] == subject)
            .map(|r| r.body["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let campaign_events: Vec<String> = received
        .iter()
        .filter(|r| r.body["type"].as_str().unwrap().starts_with("campaign."))
        .map(|r| r.body["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(campaign_events, ["campaign.started", "campaign.completed"]);
    let messages: Vec<String> = received
        .iter()
        .filter(|r| r.body["type"] == "message.sent")
        .map(|r| r.body["data"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages.len(), 2);
    for message in &messages {
        assert_eq!(
            types_of(message, "message_id"),
            ["message.sent", "message.delivered", "message.read"],
            "one message's events in order"
        );
    }
    let sent = received
        .iter()
        .find(|r| r.body["type"] == "message.sent")
        .unwrap();
    assert_eq!(sent.body["data"]["campaign_id"], campaign.as_str());
    assert_eq!(sent.body["data"]["sender_id"], sender.as_str());
    assert_eq!(sent.body["data"]["status"], "sent");
    assert!(
        sent.body["data"]["to"]
            .as_str()
            .unwrap()
            .starts_with("+2010")
    );
    assert!(sent.body["timestamp"].as_str().unwrap().ends_with('Z'));

    // The delivery log.
    let log = api
        .wait_for(
            &format!("/v1/webhooks/{webhook}/deliveries?status=succeeded&per_page=200"),
            |body| body["total"] == 9,
        )
        .await;
    let first = &log["data"][0];
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["response_status"], 200);
    assert!(first["duration_ms"].is_number());
    assert_eq!(first["next_attempt_at"], Value::Null);
    assert!(first["event_id"].as_str().unwrap().starts_with("evt_"));
    let ids: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&first["event_id"].as_str().unwrap()));
    assert_eq!(
        api.get(&format!("/v1/webhooks/{webhook}/deliveries?status=failed"))
            .await
            .body["total"],
        0
    );
    api.get(&format!("/v1/webhooks/{webhook}/deliveries?status=lost"))
        .await
        .expect_error(422, "validation_failed");
    api.stop().await;
}

/// Moves `clock` on by `seconds` and gives the dispatcher time to notice.
async fn advance(clock: &ManualClock, seconds: i64) {
    clock.advance(chrono::Duration::seconds(seconds));
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn a_failing_endpoint_is_retried_on_schedule_then_failed_and_replayed(db: TestDb) {
    let clock = ManualClock::new(super::common::at(2026, 12, 2, 9, 0));
    let api = Api::start_on_clock(db, Arc::new(clock.clone())).await;
    let (receiver, url) = Receiver::start().await;
    receiver.otherwise(Some(500));
    let webhook = api
        .post(
            "/v1/webhooks",
            json!({"url": url, "events": ["campaign.*"]}),
        )
        .await
        .id();
    let deliveries = format!("/v1/webhooks/{webhook}/deliveries");
    // Two tests: one subject (the endpoint), so the second waits behind the first.
    api.post_empty(&format!("/v1/webhooks/{webhook}/test"))
        .await
        .expect(202);
    receiver.wait_for(1).await;
    api.post_empty(&format!("/v1/webhooks/{webhook}/test"))
        .await
        .expect(202);
    let log = api
        .wait_for(&deliveries, |body| {
            body["total"] == 2 && body["data"][1]["attempts"] == 1
        })
        .await;
    // Newest first: [1] is the first test.
    let first = &log["data"][1];
    assert_eq!(first["status"], "pending");
    assert_eq!(first["response_status"], 500);
    assert_eq!(
        first["error"],
        "the endpoint answered 500 Internal Server Error"
    );
    assert_eq!(first["next_attempt_at"], "2026-12-02T09:00:10Z");
    assert_eq!(
        log["data"][0]["attempts"], 0,
        "the second waits for the first"
    );
    let first_id = first["event_id"].as_str().unwrap().to_owned();

    // Nothing before its time; then 10 s, 60 s, 5 min, 30 min, 2 h.
    advance(&clock, 9).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "no attempt before the 10 s are up"
    );
    let mut expected = 1;
    for wait in [1, 60, 300, 1800, 7200] {
        if wait != 1 {
            // Each wait is counted from the failed attempt, at the clock's time of it.
            advance(&clock, wait - 1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(receiver.received().len(), expected, "early after {wait} s");
            advance(&clock, 1).await;
        } else {
            advance(&clock, 1).await;
        }
        expected += 1;
        receiver.wait_for(expected).await;
        // The attempt is recorded before the clock moves again.
        api.wait_for(&deliveries, |body| {
            body["data"][1]["attempts"] == expected as i64
        })
        .await;
    }
    let log = api
        .wait_for(&format!("{deliveries}?status=failed"), |body| {
            body["total"] == 1
        })
        .await;
    let failed = &log["data"][0];
    assert_eq!(failed["attempts"], 6, "six attempts, then failed");
    assert_eq!(failed["next_attempt_at"], Value::Null);
    // Every attempt carried the same webhook-id.
    let received = receiver.received();
    assert!(
        received[..6].iter().all(|r| r.id == first_id),
        "{received:?}"
    );

    // Once the first has failed, the second goes (and fails its first attempt).
    let received = receiver.wait_for(7).await;
    assert_ne!(received[6].id, first_id);

    // A replay delivers the failed one again, same id, to an endpoint now healthy.
    receiver.otherwise(None);
    let delivery_id = failed["id"].as_str().unwrap();
    api.post_empty(&format!("{deliveries}/{delivery_id}/replay"))
        .await
        .expect(202);
    advance(&clock, 1).await;
    let received = receiver.wait_for(8).await;
    assert!(received[7..].iter().any(|r| r.id == first_id));
    api.wait_for(&format!("{deliveries}?status=succeeded"), |body| {
        body["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["event_id"] == first_id.as_str()))
    })
    .await;
    api.post_empty(&format!("{deliveries}/{}/replay", unknown_id()))
        .await
        .expect_error(404, "not_found");
    api.stop().await;
}

async fn retry_after_gone_and_redirects_are_honoured(db: TestDb) {
    let clock = ManualClock::new(super::common::at(2026, 12, 2, 9, 0));
    let api = Api::start_on_clock(db, Arc::new(clock.clone())).await;
    let (receiver, url) = Receiver::start().await;
    let webhook = api
        .post("/v1/webhooks", json!({"url": url, "events": ["*"]}))
        .await
        .id();
    let deliveries = format!("/v1/webhooks/{webhook}/deliveries");

    // 503 with Retry-After: 120 puts the next attempt 120 s on, not 10 s.
    receiver.answer(503, &[("retry-after", "120")]);
    api.post_empty(&format!("/v1/webhooks/{webhook}/test"))
        .await
        .expect(202);
    let log = api
        .wait_for(&deliveries, |body| body["data"][0]["attempts"] == 1)
        .await;
    assert_eq!(log["data"][0]["next_attempt_at"], "2026-12-02T09:02:00Z");
    advance(&clock, 60).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 1);
    advance(&clock, 60).await;
    receiver.wait_for(2).await;
    api.wait_for(&format!("{deliveries}?status=succeeded"), |body| {
        body["total"] == 1
    })
    .await;

    // A redirect is an answer, not a new address: not followed, retried.
    let (elsewhere, elsewhere_url) = Receiver::start().await;
    receiver.answer(302, &[("location", elsewhere_url.as_str())]);
    api.post_empty(&format!("/v1/webhooks/{webhook}/test"))
        .await
        .expect(202);
    let log = api
        .wait_for(&format!("{deliveries}?status=pending"), |body| {
            body["data"][0]["attempts"] == 1
        })
        .await;
    assert!(
        log["data"][0]["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{log}"
    );
    assert!(
        elsewhere.received().is_empty(),
        "the redirect was not followed"
    );
    advance(&clock, 10).await;
    receiver.wait_for(4).await;

    // 410 Gone: failed at once, the endpoint disabled with the reason, nothing more sent.
    receiver.answer(410, &[]);
    api.post_empty(&format!("/v1/webhooks/{webhook}/test"))
        .await
        .expect(202);
    api.wait_for(&format!("{deliveries}?status=failed"), |body| {
        body["total"] == 1
    })
    .await;
    let shown = api
        .wait_for(&format!("/v1/webhooks/{webhook}"), |body| {
            body["enabled"] == false
        })
        .await;
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    let before = receiver.received().len();
    api.post("/v1/contacts", json!({"phone": "+201012345609"}))
        .await
        .expect(201);
    advance(&clock, 3600).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        before,
        "a disabled endpoint gets nothing"
    );
    // Enabled again, it gets what happens from then on (not what happened while it was off).
    api.patch(&format!("/v1/webhooks/{webhook}"), json!({"enabled": true}))
        .await
        .expect(200);
    api.post("/v1/contacts", json!({"phone": "+201012345610"}))
        .await
        .expect(201);
    let received = receiver.wait_for(before + 1).await;
    assert_eq!(received[before].body["type"], "contact.created");
    assert_eq!(received[before].body["data"]["phone"], "+201012345610");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), before + 1);
    api.stop().await;
}

async fn a_slow_endpoint_holds_up_no_other(db: TestDb) {
    let api = Api::start(db).await;
    let (slow, slow_url) = Receiver::start().await;
    slow.delay(Duration::from_secs(4));
    let (fast, fast_url) = Receiver::start().await;
    for url in [&slow_url, &fast_url] {
        api.post("/v1/webhooks", json!({"url": url, "events": ["contact.*"]}))
            .await
            .expect(201);
    }
    let started = std::time::Instant::now();
    api.post("/v1/contacts", json!({"phone": "+201012345601"}))
        .await
        .expect(201);
    fast.wait_for(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the fast endpoint waited {:?} for the slow one",
        started.elapsed()
    );
    // The slow one is answered too (4 s is within the 10 s a delivery has), and recorded.
    api.post("/v1/contacts", json!({"phone": "+201012345602"}))
        .await
        .expect(201);
    fast.wait_for(2).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    slow.wait_for(2).await;
    let webhooks = api.get("/v1/webhooks").await;
    let slow_id = webhooks.body["data"][0]["id"].as_str().unwrap().to_owned();
    api.wait_for(
        &format!("/v1/webhooks/{slow_id}/deliveries?status=succeeded"),
        |body| body["total"] == 2,
    )
    .await;
    assert_eq!(slow.received().len(), 2, "each once");
    api.stop().await;
}
