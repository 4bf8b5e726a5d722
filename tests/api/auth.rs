//! Tokens, abilities, workspace isolation, rate limits, and the envelope for malformed requests.

use std::sync::Arc;

use herald::clock::ManualClock;
use reqwest::Method;
use serde_json::json;

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn requests_without_a_valid_token_are_refused(db: TestDb) {
    let api = Api::start(db).await;
    let anonymous = api
        .send(api.client_without_token(Method::GET, "/v1/contacts"))
        .await;
    anonymous.expect_error(401, "unauthenticated");
    for token in ["", "hrl_nope", "hrl_0192_abc", &format!("{}x", api.token)] {
        api.send(api.request_as(token, Method::GET, "/v1/contacts"))
            .await
            .expect_error(401, "unauthenticated");
    }
    let basic = api
        .client_without_token(Method::GET, "/v1/contacts")
        .header("Authorization", format!("Basic {}", api.token));
    api.send(basic).await.expect_error(401, "unauthenticated");
    // Public routes need none.
    api.send(api.client_without_token(Method::GET, "/v1/health"))
        .await
        .expect(200);
    api.send(api.client_without_token(Method::GET, "/v1/openapi.json"))
        .await
        .expect(200);
    api.stop().await;
}

/// A revoked or expired key is refused on its very next request: keys are read from the
/// database on every request, with no cache that could outlive a revocation.
async fn revoked_and_expired_keys_are_refused_at_once(db: TestDb) {
    use chrono::Utc;
    use herald::cli::{CreateKey, create_api_key};
    use herald::clock::{Clock, ManualClock, SystemClock};

    let api = Api::start(db).await;
    let args = |expires_at| CreateKey {
        name: "temporary".into(),
        abilities: "*".into(),
        workspace: "acme".into(),
        rate_per_minute: None,
        daily_quota: None,
        monthly_quota: None,
        expires_at,
    };
    let db = &api.state().db;
    let later = Utc::now() + chrono::Duration::hours(1);
    let (_, lasting) = create_api_key(db, &SystemClock, &args(Some(later)))
        .await
        .unwrap();
    api.send(api.request_as(&lasting, Method::GET, "/v1/contacts"))
        .await
        .expect(200);
    // Created an hour ago to end half an hour ago.
    let an_hour_ago = ManualClock::new(Utc::now() - chrono::Duration::hours(1));
    let ended = an_hour_ago.now() + chrono::Duration::minutes(30);
    let (_, expired) = create_api_key(db, &an_hour_ago, &args(Some(ended)))
        .await
        .unwrap();
    api.send(api.request_as(&expired, Method::GET, "/v1/contacts"))
        .await
        .expect_error(401, "unauthenticated");
    assert!(
        create_api_key(
            db,
            &SystemClock,
            &args(Some(Utc::now() - chrono::Duration::seconds(1)))
        )
        .await
        .is_err(),
        "a key cannot be born expired"
    );

    let key_id: herald::domain::ids::ApiKeyId = lasting
        .strip_prefix("hrl_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|simple| uuid::Uuid::parse_str(simple).ok())
        .unwrap()
        .into();
    {
        let mut conn = db.write().await.unwrap();
        assert!(
            herald::store::api_keys::revoke(conn.conn(), key_id, Utc::now())
                .await
                .unwrap()
        );
    }
    api.send(api.request_as(&lasting, Method::GET, "/v1/contacts"))
        .await
        .expect_error(401, "unauthenticated");
    api.stop().await;
}

async fn each_route_checks_its_ability(db: TestDb) {
    let api = Api::start(db).await;
    let reader = api.key("acme", "contacts.read", None).await;
    api.send(api.request_as(&reader, Method::GET, "/v1/contacts"))
        .await
        .expect(200);
    // Refused before the body is even read: a bad body still gets 403.
    let refused = api
        .send(
            api.request_as(&reader, Method::POST, "/v1/contacts")
                .body("{not json"),
        )
        .await;
    let details = refused.expect_error(403, "insufficient_ability");
    assert_eq!(details["required_ability"], "contacts.write");
    for (method, path, ability) in [
        (Method::GET, "/v1/senders", "senders.read"),
        (Method::POST, "/v1/senders", "senders.write"),
        (Method::GET, "/v1/campaigns", "campaigns.read"),
        (Method::POST, "/v1/campaigns", "campaigns.write"),
        (Method::GET, "/v1/templates", "campaigns.read"),
        (Method::POST, "/v1/messages", "messages.send"),
        (Method::GET, "/v1/messages", "messages.read"),
    ] {
        let reply = api.send(api.request_as(&reader, method, path)).await;
        assert_eq!(
            reply.expect_error(403, "insufficient_ability")["required_ability"],
            ability,
            "{path}"
        );
    }
    api.stop().await;
}

async fn another_workspace_sees_nothing(db: TestDb) {
    let api = Api::start(db).await;
    let id = api.contact("+201012345678", json!({"name": "Jane"})).await;
    let sender = api.sandbox_sender().await;
    let other = api.key("globex", "*", None).await;
    for (method, path) in [
        (Method::GET, format!("/v1/contacts/{id}")),
        (Method::PATCH, format!("/v1/contacts/{id}")),
        (Method::DELETE, format!("/v1/contacts/{id}")),
        (Method::POST, format!("/v1/contacts/{id}/block")),
        (Method::GET, format!("/v1/senders/{sender}")),
        (Method::DELETE, format!("/v1/senders/{sender}")),
    ] {
        api.send(
            api.request_as(&other, method, &path)
                .json(&json!({"name": "Mallory"})),
        )
        .await
        .expect_error(404, "not_found");
    }
    let list = api
        .send(api.request_as(&other, Method::GET, "/v1/contacts"))
        .await;
    assert_eq!(list.expect(200)["total"], 0);
    // The same phone is a different contact in another workspace.
    api.send(
        api.request_as(&other, Method::POST, "/v1/contacts")
            .json(&json!({"phone": "+201012345678"})),
    )
    .await
    .expect(201);
    // A campaign cannot borrow another workspace's sender.
    let borrowed = api
        .send(
            api.request_as(&other, Method::POST, "/v1/campaigns")
                .json(&json!({
                    "name": "x", "sender_id": sender, "content": "hi", "audience": {"type": "all"}
                })),
        )
        .await;
    assert!(borrowed.expect_error(422, "validation_failed")["errors"]["sender_id"].is_array());
    // Untouched in its own workspace.
    assert_eq!(
        api.get(&format!("/v1/contacts/{id}")).await.expect(200)["name"],
        "Jane"
    );
    api.stop().await;
}

async fn every_response_reports_the_rate_limit_and_429_past_it(db: TestDb) {
    // A second before a UTC minute ends, so that the budget is seen across the minute's edge.
    let clock = ManualClock::new("2026-12-01T11:59:59Z".parse().unwrap());
    let api = Api::start_on_clock(db, Arc::new(clock.clone())).await;
    let first = api.get("/v1/contacts").await;
    assert_eq!(first.header("x-ratelimit-limit"), Some("600"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("599"));

    // A key of 3 a minute: three at once, then one every 20 s, in every process (the budget is
    // in the database).
    let slow = api.key("acme", "*", Some(3)).await;
    let mut remaining = Vec::new();
    for path in [
        "/v1/contacts".to_owned(),
        // Error responses carry the headers and spend the budget too.
        format!("/v1/contacts/{}", unknown_id()),
        "/v1/contacts".to_owned(),
    ] {
        let reply = api.send(api.request_as(&slow, Method::GET, &path)).await;
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        remaining.push(reply.header("x-ratelimit-remaining").unwrap().to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let refused = |retry_after: &str| {
        let (api, slow) = (&api, &slow);
        let retry_after = retry_after.to_owned();
        async move {
            let limited = api
                .send(api.request_as(slow, Method::GET, "/v1/contacts"))
                .await;
            limited.expect_error(429, "rate_limited");
            assert_eq!(limited.header("retry-after"), Some(retry_after.as_str()));
            assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
        }
    };
    refused("20").await;
    // A new minute does not bring a new minute's worth (a window per clock minute would).
    clock.advance(chrono::Duration::seconds(2));
    refused("18").await;
    // Refused requests spent nothing: one interval after the burst, exactly one more.
    clock.advance(chrono::Duration::seconds(18));
    let again = api
        .send(api.request_as(&slow, Method::GET, "/v1/contacts"))
        .await;
    again.expect(200);
    assert_eq!(again.header("x-ratelimit-remaining"), Some("0"));
    refused("20").await;
    // Other keys keep their own budget.
    api.get("/v1/contacts").await.expect(200);
    api.stop().await;
}

async fn malformed_requests_get_the_envelope(db: TestDb) {
    let api = Api::start(db).await;
    for body in [
        "{",
        "not json",
        "",
        "{\"phone\": \"+201012345678\"} trailing",
    ] {
        let reply = api
            .send(api.request(Method::POST, "/v1/contacts").body(body))
            .await;
        reply.expect_error(400, "invalid_json");
    }
    let typed = api
        .post("/v1/contacts", json!({"phone": 201012345678u64}))
        .await;
    assert!(typed.expect_error(422, "validation_failed")["errors"]["phone"].is_array());
    let missing = api.post("/v1/contacts", json!({"name": "x"})).await;
    assert_eq!(
        missing.expect_error(422, "validation_failed")["errors"]["phone"][0],
        "is required"
    );
    let nested = api
        .post(
            "/v1/campaigns",
            json!({"name": "x", "sender_id": unknown_id(), "content": "hi",
                                      "audience": {"type": "everyone"}}),
        )
        .await;
    assert!(nested.expect_error(422, "validation_failed")["errors"]["audience.type"].is_array());
    api.get("/v1/nowhere").await.expect_error(404, "not_found");
    api.get("/v1/contacts/not-an-id")
        .await
        .expect_error(404, "not_found");
    api.send(api.request(Method::PUT, "/v1/contacts"))
        .await
        .expect_error(405, "method_not_allowed");
    for query in [
        "page=0",
        "per_page=0",
        "per_page=201",
        "page=abc",
        "blocked=maybe",
    ] {
        api.get(&format!("/v1/contacts?{query}"))
            .await
            .expect_error(422, "validation_failed");
    }
    let huge = vec![b' '; herald::http::idempotency::MAX_BODY_BYTES + 1];
    for idempotency_key in [None, Some("big-1")] {
        let mut request = api.request(Method::POST, "/v1/contacts").body(huge.clone());
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        api.send(request)
            .await
            .expect_error(413, "payload_too_large");
    }
    api.get("/v1/campaigns?status=finished")
        .await
        .expect_error(422, "validation_failed");
    api.stop().await;
}

dialect_tests!(
    revoked_and_expired_keys_are_refused_at_once,
    requests_without_a_valid_token_are_refused,
    each_route_checks_its_ability,
    another_workspace_sees_nothing,
    every_response_reports_the_rate_limit_and_429_past_it,
    malformed_requests_get_the_envelope,
);
