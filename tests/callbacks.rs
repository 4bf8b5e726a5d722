//! `POST /v1/callbacks/{sender_id}` over real HTTP: signed reports move messages forward and
//! their counters; bad input is refused with the envelope and changes nothing.

mod common;

use chrono::Utc;
use herald::app::Application;
use herald::config::Config;
use herald::domain::callback::sign;
use herald::domain::message::MessageStatus;
use herald::store::Page;
use herald::store::campaigns;
use herald::store::messages::{self, MessageFilter};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_callbacks_move_messages_and_counters_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("herald.db").display()),
        engine_tick_ms: 20,
        allow_private_urls: true,
        ..Config::default()
    };
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let db = app.state().db.clone();
    let server = tokio::spawn(app.run_until(std::future::pending()));

    // A campaign of three, sent by the sandbox, which reports nothing itself.
    let common::SentCampaign {
        ws,
        sender,
        campaign,
        sent,
    } = common::silent_campaign_sent(&db, "whsec_test").await;
    let provider_id = sent[0].provider_message_id.clone().unwrap();

    let client = reqwest::Client::new();
    let url = format!("{base}/v1/callbacks/{}", sender.id);
    let post = |body: String, secret: &str, timestamp: i64| {
        let signature = sign(secret, timestamp, body.as_bytes());
        client
            .post(&url)
            .header("X-Herald-Timestamp", timestamp.to_string())
            .header("X-Herald-Signature", signature)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let events = json!({"events": [
        {"type": "status", "message_id": provider_id, "status": "read", "at": "2026-11-21T10:02:00Z"},
        {"type": "status", "message_id": provider_id, "status": "delivered", "at": "2026-11-21T10:01:00Z"},
        {"type": "status", "message_id": sent[1].id.to_string(), "status": "delivered"},
        {"type": "status", "message_id": sent[2].id.to_string(), "status": "failed", "error": "131026 undeliverable"},
        {"type": "inbound", "from": "+20 100 000 0000", "body": "STOP"}
    ]})
    .to_string();

    // Refused first: a wrong secret, a stale timestamp, no signature, an unknown sender.
    let stale = Utc::now().timestamp() - 301;
    for response in [
        post(events.clone(), "wrong", Utc::now().timestamp())
            .await
            .unwrap(),
        post(events.clone(), "whsec_test", stale).await.unwrap(),
        client.post(&url).body(events.clone()).send().await.unwrap(),
        client
            .post(format!("{base}/v1/callbacks/{}", uuid::Uuid::now_v7()))
            .body(events.clone())
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    let malformed = post(
        "{\"events\": [".into(),
        "whsec_test",
        Utc::now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
    let mut conn = db.read().await.unwrap();
    let untouched = campaigns::get(conn.conn(), ws, campaign.id).await.unwrap();
    assert_eq!(
        (untouched.delivered_count, untouched.read_count),
        (0, 0),
        "refused callbacks changed nothing"
    );
    drop(conn);

    let accepted = post(events, "whsec_test", Utc::now().timestamp())
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        accepted.json::<Value>().await.unwrap(),
        json!({"applied": 4, "inbound": 1, "deferred": 0, "replies": 1}),
        "STOP opts the contact out and queues its confirmation"
    );

    let mut conn = db.read().await.unwrap();
    let stats = campaigns::get(conn.conn(), ws, campaign.id)
        .await
        .unwrap()
        .stats();
    assert_eq!(
        (
            stats.counters.sent,
            stats.counters.delivered,
            stats.counters.read,
            stats.counters.failed
        ),
        (3, 2, 1, 1)
    );
    assert_eq!((stats.delivery_rate, stats.read_rate), (66.67, 50.0));
    let first = messages::get(conn.conn(), ws, sent[0].id).await.unwrap();
    assert_eq!(
        first.status,
        MessageStatus::Read,
        "a late delivered never undoes a read"
    );
    let failed = messages::get(conn.conn(), ws, sent[2].id).await.unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (MessageStatus::Failed, Some("131026 undeliverable"))
    );
    let inbound = MessageFilter {
        direction: Some(herald::domain::message::Direction::Inbound),
        ..Default::default()
    };
    let (received, _) = messages::list(conn.conn(), ws, inbound, Page::default())
        .await
        .unwrap();
    assert_eq!(
        (
            received.len(),
            received[0].phone.as_str(),
            received[0].body.as_deref()
        ),
        (1, "+201000000000", Some("STOP"))
    );
    assert_eq!(
        received[0].contact_id,
        Some(
            sent.iter()
                .find(|m| m.phone == "+201000000000")
                .unwrap()
                .contact_id
                .unwrap()
        )
    );
    server.abort();
}
