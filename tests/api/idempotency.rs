//! `Idempotency-Key`: the first response replayed, a running one refused, bad keys refused.

use chrono::Duration;
use herald::domain::auth::PresentedToken;
use herald::store::idempotency::{self, Claim, Scope};
use reqwest::Method;
use serde_json::json;

use crate::Api;
use crate::common::TestDb;

async fn a_repeated_key_replays_the_first_response(db: TestDb) {
    let api = Api::start(db).await;
    let create = |key: &str, phone: &str| {
        api.request(Method::POST, "/v1/contacts")
            .header("Idempotency-Key", key)
            .json(&json!({"phone": phone}))
    };
    let first = api.send(create("order-42_a", "+201012345678")).await;
    first.expect(201);
    assert_eq!(first.header("idempotent-replay"), None);
    let replay = api.send(create("order-42_a", "+201012345678")).await;
    replay.expect(201);
    assert_eq!(replay.header("idempotent-replay"), Some("true"));
    assert_eq!(replay.body, first.body, "the same contact, not a duplicate");
    assert!(replay.header("x-ratelimit-remaining").is_some());
    assert_eq!(api.get("/v1/contacts").await.expect(200)["total"], 1);

    // Errors replay too; the key is per path and per API key.
    let bad = api.send(create("k-bad", "nope")).await;
    bad.expect_error(422, "validation_failed");
    let again = api.send(create("k-bad", "nope")).await;
    again.expect_error(422, "validation_failed");
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    let other_key = api.key("acme", "*", None).await;
    let fresh = api
        .send(
            api.request_as(&other_key, Method::POST, "/v1/contacts")
                .header("Idempotency-Key", "order-42_a")
                .json(&json!({"phone": "+201112345678"})),
        )
        .await;
    fresh.expect(201);
    assert_eq!(fresh.header("idempotent-replay"), None);

    // The same key with another body is refused, not replayed.
    api.send(create("order-42_a", "+201212345678"))
        .await
        .expect_error(409, "idempotency_key_reused");
    // DELETE and PATCH take keys too; GET ignores them.
    let id = first.id();
    for _ in 0..2 {
        let deleted = api
            .send(
                api.request(Method::DELETE, &format!("/v1/contacts/{id}"))
                    .header("Idempotency-Key", "delete-1"),
            )
            .await;
        assert_eq!(deleted.status.as_u16(), 204);
    }
    let read = api
        .send(
            api.request(Method::GET, "/v1/contacts")
                .header("Idempotency-Key", "not checked!"),
        )
        .await;
    read.expect(200);
    api.stop().await;
}

async fn malformed_and_running_keys_are_refused(db: TestDb) {
    let api = Api::start(db).await;
    for key in ["has space", "dots.are.out", &"k".repeat(256)] {
        let reply = api
            .send(
                api.request(Method::POST, "/v1/contacts")
                    .header("Idempotency-Key", key)
                    .json(&json!({"phone": "+201012345678"})),
            )
            .await;
        reply.expect_error(400, "invalid_idempotency_key");
    }
    assert_eq!(api.get("/v1/contacts").await.expect(200)["total"], 0);
    let longest = "k".repeat(255);
    api.send(
        api.request(Method::POST, "/v1/contacts")
            .header("Idempotency-Key", &longest)
            .json(&json!({"phone": "+201012345678"})),
    )
    .await
    .expect(201);

    // A request still running holds its key: another process's claim, seen from here.
    let body = json!({"phone": "+201112345678"});
    let key_id = PresentedToken::parse(&api.token).unwrap().key_id;
    let scope = Scope {
        api_key: key_id,
        path: "/v1/contacts",
        key: "in-flight",
    };
    let fingerprint = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"POST\n");
        hasher.update(serde_json::to_vec(&body).unwrap());
        hex::encode(hasher.finalize())
    };
    let now = chrono::Utc::now();
    let mut conn = api.state().db.write().await.unwrap();
    let claim = idempotency::claim(
        conn.conn(),
        &scope,
        &fingerprint,
        now,
        Duration::minutes(2),
        Duration::hours(24),
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(claim, Claim::Started);
    let running = api
        .send(
            api.request(Method::POST, "/v1/contacts")
                .header("Idempotency-Key", "in-flight")
                .json(&body),
        )
        .await;
    running.expect_error(409, "idempotency_in_progress");
    assert_eq!(api.get("/v1/contacts").await.expect(200)["total"], 1);
    api.stop().await;
}

dialect_tests!(
    a_repeated_key_replays_the_first_response,
    malformed_and_running_keys_are_refused,
);
