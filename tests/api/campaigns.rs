//! `/v1/campaigns`: validation against the workspace, the state machine, and a campaign sent
//! end to end through the http provider, with stats from signed callbacks.

use chrono::Utc;
use herald::domain::callback::sign;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn campaigns_are_checked_against_their_workspace(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    api.contact(
        "+201012345678",
        json!({"name": "Jane", "custom_fields": {"code": "J1"}}),
    )
    .await;
    api.contact("+201112345678", json!({})).await;
    let campaign = |extra: Value| {
        let mut body = json!({"name": "Launch", "sender_id": sender, "audience": {"type": "all"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        api.post("/v1/campaigns", body)
    };
    for (field, extra) in [
        (
            "sender_id",
            json!({"content": "hi", "sender_id": unknown_id()}),
        ),
        ("template_id", json!({"template_id": unknown_id()})),
        ("content", json!({})),
        (
            "content",
            json!({"content": "hi", "template_id": unknown_id()}),
        ),
        ("content", json!({"content": "Hi <<name"})),
        (
            "audience.group_id",
            json!({"content": "hi", "audience": {"type": "group", "group_id": unknown_id()}}),
        ),
        (
            "audience.tags",
            json!({"content": "hi", "audience": {"type": "tags", "tags": []}}),
        ),
        (
            "audience.contact_ids",
            json!({"content": "hi", "audience": {"type": "contacts", "contact_ids": []}}),
        ),
        ("name", json!({"content": "hi", "name": ""})),
        // Nobody has a `coupon` field and the campaign gives none.
        ("variables.coupon", json!({"content": "Use <<coupon>>"})),
    ] {
        let reply = campaign(extra).await;
        assert!(
            reply.expect_error(422, "validation_failed")["errors"][field].is_array(),
            "{field}: {}",
            reply.body
        );
    }
    let too_many: Vec<String> = (0..10_001).map(|_| unknown_id()).collect();
    campaign(json!({"content": "hi", "audience": {"type": "contacts", "contact_ids": too_many}}))
        .await
        .expect_error(422, "validation_failed");
    // Fillable: by a fallback, by a campaign value, or by at least one recipient's field.
    for content in [
        "Use <<coupon|NONE>>",
        "Hi <<name>>, use <<code>>",
        "<<phone>>",
    ] {
        campaign(json!({"content": content})).await.expect(201);
    }
    let valued =
        campaign(json!({"content": "Use <<coupon>>", "variables": {"coupon": "C10"}})).await;
    let valued = valued.expect(201);
    assert_eq!(valued["status"], "draft");
    assert_eq!(valued["variables"], json!({"coupon": "C10"}));
    let template = api
        .post(
            "/v1/templates",
            json!({"name": "t", "content": "From a template"}),
        )
        .await
        .id();
    let from_template = campaign(json!({"template_id": template})).await;
    assert_eq!(from_template.expect(201)["content"], "From a template");
    // The campaign keeps the text it copied when its template changes later.
    api.patch(
        &format!("/v1/templates/{template}"),
        json!({"content": "Edited"}),
    )
    .await
    .expect(200);
    let renamed = api
        .patch(
            &format!("/v1/campaigns/{}", from_template.id()),
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(renamed.expect(200)["content"], "From a template");
    assert_eq!(renamed.body["template_id"], template.as_str());
    api.stop().await;
}

async fn campaigns_move_through_their_states(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api
        .post(
            "/v1/senders",
            // A window that never opens keeps the campaign running with nothing sent.
            json!({"name": "Closed", "provider": "sandbox", "timezone": "UTC",
                   "pacing": {"send_window": {"days": [1], "start": "00:00", "end": "00:01"},
                              "daily_limit": 1}}),
        )
        .await
        .id();
    for n in 0..3 {
        api.contact(&format!("+2010123456{n:02}"), json!({})).await;
    }
    let id = api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": sender, "content": "Hi", "audience": {"type": "all"}}),
        )
        .await
        .id();
    let path = |action: &str| format!("/v1/campaigns/{id}/{action}");

    api.post(&path("schedule"), json!({"at": "2020-01-01T09:00:00Z"}))
        .await
        .expect_error(422, "validation_failed");
    api.post(&path("schedule"), json!({"at": "soon"}))
        .await
        .expect_error(422, "validation_failed");
    api.post(
        &path("schedule"),
        json!({"at": "2099-12-01T09:00:00", "timezone": "Mars/Base"}),
    )
    .await
    .expect_error(422, "validation_failed");
    let scheduled = api
        .post(
            &path("schedule"),
            json!({"at": "2099-12-01T09:00:00", "timezone": "Asia/Jerusalem"}),
        )
        .await;
    let scheduled = scheduled.expect(200);
    assert_eq!(scheduled["status"], "scheduled");
    assert_eq!(scheduled["scheduled_at"], "2099-12-01T07:00:00Z");
    let moved = api
        .post(
            &path("schedule"),
            json!({"at": "2099-12-02T08:00:00+02:00"}),
        )
        .await;
    assert_eq!(moved.expect(200)["scheduled_at"], "2099-12-02T06:00:00Z");
    let renamed = api
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"name": "Spring sale"}),
        )
        .await;
    assert_eq!(renamed.expect(200)["name"], "Spring sale");
    assert_eq!(renamed.body["status"], "scheduled");
    api.post_empty(&path("resume"))
        .await
        .expect_error(409, "invalid_transition");

    let started = api.post_empty(&path("start")).await;
    assert_eq!(started.expect(200)["status"], "running");
    let stats = api.get(&path("stats")).await;
    let stats = stats.expect(200);
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["pending"], 3);
    assert_eq!(stats["delivery_rate"], 0.0);
    let details = api
        .patch(&format!("/v1/campaigns/{id}"), json!({"name": "Too late"}))
        .await;
    assert_eq!(
        details.expect_error(409, "invalid_transition")["status"],
        "running"
    );
    assert_eq!(
        api.delete(&format!("/v1/campaigns/{id}"))
            .await
            .expect_error(409, "invalid_transition")["status"],
        "running"
    );
    api.post(&path("schedule"), json!({"at": "2099-12-01T09:00:00Z"}))
        .await
        .expect_error(409, "invalid_transition");
    assert_eq!(
        api.post_empty(&path("pause")).await.expect(200)["status"],
        "paused"
    );
    assert_eq!(
        api.post_empty(&path("pause"))
            .await
            .expect_error(409, "invalid_transition")["status"],
        "paused"
    );
    assert_eq!(
        api.post_empty(&path("resume")).await.expect(200)["status"],
        "running"
    );
    let canceled = api.post_empty(&path("cancel")).await;
    assert_eq!(canceled.expect(200)["status"], "canceled");
    let stats = api.get(&path("stats")).await;
    assert_eq!(stats.expect(200)["skipped"], 3);
    assert_eq!(stats.body["status"], "canceled");
    let skipped = api
        .get(&format!(
            "/v1/campaigns/{id}/messages?status=skipped&per_page=2"
        ))
        .await;
    let skipped = skipped.expect(200);
    assert_eq!(skipped["total"], 3);
    assert_eq!(skipped["data"].as_array().unwrap().len(), 2);
    assert_eq!(skipped["data"][0]["error"], "campaign canceled");
    api.get(&format!("/v1/campaigns/{id}/messages?status=lost"))
        .await
        .expect_error(422, "validation_failed");
    api.post_empty(&path("start"))
        .await
        .expect_error(409, "invalid_transition");

    let listed = api.get("/v1/campaigns?status=canceled").await;
    assert_eq!(listed.expect(200)["total"], 1);
    assert_eq!(
        api.get("/v1/campaigns?status=draft").await.expect(200)["total"],
        0
    );
    api.delete(&format!("/v1/campaigns/{id}")).await.expect(204);
    for action in ["stats", "messages"] {
        api.get(&path(action)).await.expect_error(404, "not_found");
    }
    for action in ["start", "pause", "resume", "cancel"] {
        api.post_empty(&path(action))
            .await
            .expect_error(404, "not_found");
    }
    api.stop().await;
}

/// A gateway that accepts every message and names it `gw-<n>`.
struct Gateway;

impl Respond for Gateway {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let to = body["to"].as_str().unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(json!({"id": format!("gw-{to}")}))
    }
}

async fn a_campaign_goes_out_through_the_http_provider_and_callbacks_count(db: TestDb) {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(Gateway)
        .mount(&gateway)
        .await;
    let api = Api::start(db).await;
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Gateway", "provider": "http",
                   "provider_config": {"url": format!("{}/send", gateway.uri()),
                                       "headers": {"X-Key": "k-1"}}}),
        )
        .await;
    let sender = created.id();
    let secret = created.body["callback_secret"].as_str().unwrap().to_owned();
    let phones = [
        "+201012345601",
        "+201012345602",
        "+201012345603",
        "+201012345604",
    ];
    for (n, phone) in phones.iter().enumerate() {
        api.contact(phone, json!({"name": format!("P{n}"), "tags": ["launch"]}))
            .await;
    }
    let blocked = api
        .contact("+201012345605", json!({"tags": ["launch"]}))
        .await;
    api.post_empty(&format!("/v1/contacts/{blocked}/block"))
        .await
        .expect(200);
    let id = api
        .post(
            "/v1/campaigns",
            json!({"name": "Launch", "sender_id": sender, "content": "Hi <<name>>, <<offer>>",
                   "variables": {"offer": "20% off"}, "audience": {"type": "tags", "tags": ["launch"]}}),
        )
        .await
        .id();
    api.post_empty(&format!("/v1/campaigns/{id}/start"))
        .await
        .expect(200);
    let stats = api
        .wait_for(&format!("/v1/campaigns/{id}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(stats["total"], 4, "the blocked contact is left out");
    assert_eq!(stats["sent"], 4);
    let requests = gateway.received_requests().await.unwrap();
    assert_eq!(requests.len(), 4);
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert!(
        first["body"].as_str().unwrap().ends_with(", 20% off"),
        "{first}"
    );
    assert_eq!(requests[0].headers["x-key"], "k-1");

    let callback = |body: String, secret: &str| {
        let timestamp = Utc::now().timestamp();
        let signature = sign(secret, timestamp, body.as_bytes());
        api.client_without_token(Method::POST, &format!("/v1/callbacks/{sender}"))
            .header("X-Herald-Timestamp", timestamp.to_string())
            .header("X-Herald-Signature", signature)
            .body(body)
    };
    let events = json!({"events": [
        {"type": "status", "message_id": "gw-+201012345601", "status": "delivered"},
        {"type": "status", "message_id": "gw-+201012345602", "status": "read"},
        {"type": "status", "message_id": "gw-+201012345603", "status": "delivered"},
        {"type": "status", "message_id": "gw-+201012345604", "status": "failed", "error": "131026 undeliverable"},
    ]})
    .to_string();
    let forged = api.send(callback(events.clone(), "not-the-secret")).await;
    forged.expect_error(401, "unauthenticated");
    let unchanged = api.get(&format!("/v1/campaigns/{id}/stats")).await;
    assert_eq!(
        unchanged.expect(200)["delivered"],
        0,
        "a forged callback changes nothing"
    );
    let accepted = api.send(callback(events, &secret)).await;
    assert_eq!(accepted.expect(200)["applied"], 4);

    let stats = api.get(&format!("/v1/campaigns/{id}/stats")).await;
    let stats = stats.expect(200);
    assert_eq!(
        (
            stats["sent"].as_i64(),
            stats["delivered"].as_i64(),
            stats["read"].as_i64(),
            stats["failed"].as_i64()
        ),
        (Some(4), Some(3), Some(1), Some(1)),
        "{stats}"
    );
    assert_eq!(stats["delivery_rate"], 75.0);
    assert_eq!(stats["read_rate"], 33.33);
    let failed = api
        .get(&format!("/v1/campaigns/{id}/messages?status=failed"))
        .await;
    assert_eq!(
        failed.expect(200)["data"][0]["error"],
        "131026 undeliverable"
    );
    api.stop().await;
}

dialect_tests!(
    campaigns_are_checked_against_their_workspace,
    campaigns_move_through_their_states,
    a_campaign_goes_out_through_the_http_provider_and_callbacks_count,
);
