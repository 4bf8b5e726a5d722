//! `/v1/senders`: providers, pacing, the secret shown once, today's usage.

use serde_json::json;

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn senders_keep_their_pacing_and_hide_their_secrets(db: TestDb) {
    let api = Api::start(db).await;
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Support line", "provider": "http",
                   "provider_config": {"url": "http://127.0.0.1:9/send", "headers": {"X-Key": "k-123"}},
                   "timezone": "Asia/Jerusalem",
                   "pacing": {"daily_limit": 1000,
                              "warmup_enabled": true, "warmup_start_limit": 50,
                              "warmup_max_limit": 1000, "warmup_days": 14,
                              "shift_min_ms": 2000, "shift_max_ms": 5000,
                              "typing_enabled": true, "typing_cps": 12, "typing_min_ms": 800,
                              "typing_max_ms": 8000, "rate_per_minute": 60,
                              "send_window": {"days": [1,2,3,4,5], "start": "09:00", "end": "20:00"}}}),
        )
        .await;
    let body = created.expect(201).clone();
    let id = created.id();
    let secret = body["callback_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    // API.md: secrets in provider_config are shown as "***".
    assert_eq!(body["provider_config"]["headers"]["X-Key"], "***");
    assert_eq!(body["pacing"]["warmup_days"], 14);
    assert_eq!(body["pacing"]["send_window"]["start"], "09:00");

    let shown = api.get(&format!("/v1/senders/{id}")).await;
    let shown = shown.expect(200);
    assert!(shown.get("callback_secret").is_none(), "shown once only");
    assert!(!shown.to_string().contains("k-123"));
    assert_eq!(shown["today"]["sent"], 0);
    assert_eq!(shown["today"]["warmup_day"], 1);
    assert_eq!(
        shown["today"]["limit"], 50,
        "warmup day 1 allows the start limit"
    );
    assert!(shown["today"]["date"].is_string());

    // Sending the mask back keeps the stored header; pacing is replaced as a whole.
    let mut config = shown["provider_config"].clone();
    config["url"] = json!("http://127.0.0.1:9/v2/send");
    let patched = api
        .patch(
            &format!("/v1/senders/{id}"),
            json!({"provider_config": config, "pacing": {"daily_limit": 10}}),
        )
        .await;
    let patched = patched.expect(200);
    assert_eq!(patched["pacing"]["warmup_enabled"], false);
    assert_eq!(patched["name"], "Support line");
    let today = api.get(&format!("/v1/senders/{id}")).await;
    assert_eq!(today.expect(200)["today"]["limit"], 10);
    assert_eq!(today.body["today"]["warmup_day"], json!(null));
    let mut conn = api.state().db.read().await.unwrap();
    let stored = herald::store::senders::get_unscoped(conn.conn(), id.parse().unwrap())
        .await
        .unwrap();
    drop(conn);
    assert_eq!(stored.provider_config.0["headers"]["X-Key"], "k-123");
    assert_eq!(
        stored.provider_config.0["url"],
        "http://127.0.0.1:9/v2/send"
    );

    let list = api.get("/v1/senders").await;
    assert_eq!(list.expect(200)["total"], 1);
    api.delete(&format!("/v1/senders/{id}")).await.expect(204);
    api.get(&format!("/v1/senders/{id}"))
        .await
        .expect_error(404, "not_found");
    api.delete(&format!("/v1/senders/{}", unknown_id()))
        .await
        .expect_error(404, "not_found");
    api.stop().await;
}

async fn bad_sender_settings_name_their_field(db: TestDb) {
    let api = Api::start(db).await;
    for (field, body) in [
        ("provider", json!({"name": "x", "provider": "pigeon"})),
        ("name", json!({"name": " ", "provider": "sandbox"})),
        (
            "timezone",
            json!({"name": "x", "provider": "sandbox", "timezone": "Nowhere/City"}),
        ),
        (
            "provider_config.url",
            json!({"name": "x", "provider": "http", "provider_config": {}}),
        ),
        (
            "provider_config",
            json!({"name": "x", "provider": "sandbox", "provider_config": [1]}),
        ),
        (
            "pacing.warmup_start_limit",
            json!({"name": "x", "provider": "sandbox",
            "pacing": {"warmup_enabled": true, "warmup_max_limit": 10, "warmup_days": 3}}),
        ),
        (
            "pacing.shift_max_ms",
            json!({"name": "x", "provider": "sandbox",
            "pacing": {"shift_min_ms": 5000, "shift_max_ms": 10}}),
        ),
        (
            "pacing.daily_limt",
            json!({"name": "x", "provider": "sandbox", "pacing": {"daily_limt": 5}}),
        ),
        (
            "pacing.daily_limit",
            json!({"name": "x", "provider": "sandbox", "pacing": {"daily_limit": -5}}),
        ),
    ] {
        let reply = api.post("/v1/senders", body).await;
        let errors = &reply.expect_error(422, "validation_failed")["errors"];
        assert!(errors[field].is_array(), "{field}: {}", reply.body);
    }
    assert_eq!(
        api.get("/v1/senders").await.expect(200)["total"],
        0,
        "nothing half-made"
    );

    // A sender that campaigns use cannot be deleted.
    let sender = api.sandbox_sender().await;
    api.post(
        "/v1/campaigns",
        json!({"name": "c", "sender_id": sender, "content": "hi", "audience": {"type": "all"}}),
    )
    .await
    .expect(201);
    api.delete(&format!("/v1/senders/{sender}"))
        .await
        .expect_error(409, "in_use");
    api.stop().await;
}

/// The `http` provider's credentials sit one level down, in its headers: the module declares
/// them secret, so no answer of any route ever carries them.
async fn a_nested_secret_is_never_returned(db: TestDb) {
    let api = Api::start(db).await;
    let token = "Bearer s3cret-gateway-token";
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Gateway", "provider": "http",
                   "provider_config": {"url": "http://127.0.0.1:9/send",
                                       "headers": {"Authorization": token, "X-Tenant": "acme"}}}),
        )
        .await;
    let created_body = created.expect(201).to_string();
    let id = created.id();
    let shown = api.get(&format!("/v1/senders/{id}")).await;
    let listed = api.get("/v1/senders").await;
    let mut config = shown.expect(200)["provider_config"].clone();
    assert_eq!(config["headers"]["Authorization"], "***");
    assert_eq!(
        config["url"], "http://127.0.0.1:9/send",
        "what is not secret shows"
    );
    config["timeout_ms"] = json!(2000);
    let patched = api
        .patch(
            &format!("/v1/senders/{id}"),
            json!({"provider_config": config}),
        )
        .await;
    for answer in [
        created_body,
        shown.body.to_string(),
        listed.expect(200).to_string(),
        patched.expect(200).to_string(),
    ] {
        assert!(!answer.contains("s3cret"), "a secret leaked: {answer}");
    }
    let mut conn = api.state().db.read().await.unwrap();
    let stored = herald::store::senders::get_unscoped(conn.conn(), id.parse().unwrap())
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        stored.provider_config.0["headers"]["Authorization"], token,
        "the mask sent back keeps the stored secret"
    );
    assert_eq!(stored.provider_config.0["timeout_ms"], 2000);

    // Herald's own callback format has no GET challenge; an unknown sender is refused as if
    // its signature were wrong.
    let challenge = api
        .send(api.client_without_token(
            reqwest::Method::GET,
            &format!("/v1/callbacks/{id}?hub.mode=subscribe&hub.challenge=1"),
        ))
        .await;
    challenge.expect_error(405, "method_not_allowed");
    let unknown = api
        .send(api.client_without_token(
            reqwest::Method::GET,
            &format!("/v1/callbacks/{}", unknown_id()),
        ))
        .await;
    unknown.expect_error(401, "unauthenticated");
    api.stop().await;
}

dialect_tests!(
    senders_keep_their_pacing_and_hide_their_secrets,
    bad_sender_settings_name_their_field,
    a_nested_secret_is_never_returned,
);
