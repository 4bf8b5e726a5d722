//! Analytics (API.md, "Analytics, exports and metrics") over real HTTP, on a manual clock: a
//! campaign, provider reports and inbound messages at known instants, read back in UTC, in a
//! half-hour zone (Kolkata) and across a DST change (New York); every bad period refused with
//! the field named; the ability and the workspace enforced.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald::clock::{Clock, ManualClock};
use herald::domain::callback::sign;
use reqwest::Method;
use serde_json::{Value, json};

use super::common::TestDb;
use super::{Api, unknown_id};

dialect_tests!(
    analytics_read_the_rollups_in_local_dates_and_hours,
    bad_periods_abilities_and_workspaces_are_refused,
);

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A sender's callbacks, signed at the server's (manual) time.
struct Callbacks<'a> {
    api: &'a Api,
    clock: &'a ManualClock,
    sender: String,
    secret: String,
}

impl Callbacks<'_> {
    async fn deliver(&self, events: Value) {
        let body = json!({ "events": events }).to_string();
        let timestamp = self.clock.now().timestamp();
        let signature = sign(&self.secret, timestamp, body.as_bytes());
        self.api
            .send(
                self.api
                    .client_without_token(Method::POST, &format!("/v1/callbacks/{}", self.sender))
                    .header("X-Herald-Timestamp", timestamp.to_string())
                    .header("X-Herald-Signature", signature)
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await
            .expect(200);
    }
}

async fn analytics_read_the_rollups_in_local_dates_and_hours(db: TestDb) {
    // 18:10 UTC on 30 November is 23:40 in Kolkata (UTC+05:30); 18:40 is already 1 December.
    let clock = ManualClock::new(at("2026-11-30T18:10:00Z"));
    let api = Api::start_on_clock(db, Arc::new(clock.clone())).await;
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Line", "provider": "sandbox",
                   "provider_config": {"deliver_rate": 0, "read_rate": 0}}),
        )
        .await;
    created.expect(201);
    let callbacks = Callbacks {
        api: &api,
        clock: &clock,
        sender: created.id(),
        secret: created.body["callback_secret"].as_str().unwrap().to_owned(),
    };
    let sender = callbacks.sender.clone();
    api.contact("+201000000001", json!({})).await;
    clock.set(at("2026-11-30T18:40:00Z"));
    api.contact("+201000000002", json!({})).await;

    let campaign = api.start_campaign(&sender, "November").await;
    api.wait_for(&format!("/v1/campaigns/{campaign}/stats"), |body| {
        body["sent"] == 2
    })
    .await;
    let messages = api
        .get(&format!("/v1/campaigns/{campaign}/messages?per_page=10"))
        .await;
    let ids: Vec<String> = messages.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{}", messages.body);
    callbacks
        .deliver(json!([
            {"type": "status", "message_id": ids[0], "status": "delivered", "at": "2026-11-30T19:05:00Z"},
            {"type": "status", "message_id": ids[0], "status": "read", "at": "2026-11-30T19:20:00Z"},
            {"type": "status", "message_id": ids[1], "status": "failed", "at": "2026-11-30T18:50:00Z",
             "error": "131026 undeliverable"},
            {"type": "inbound", "from": "+201000000001", "body": "hi", "at": "2026-11-30T18:20:00Z"},
            {"type": "inbound", "from": "+201000000002", "body": "hello", "at": "2026-11-30T18:35:00Z"},
            // New York's spring-forward: 06:30 UTC is 01:30 EST, 07:30 UTC is 03:30 EDT.
            {"type": "inbound", "from": "+201000000001", "body": "early", "at": "2026-03-08T06:30:00Z"},
            {"type": "inbound", "from": "+201000000001", "body": "later", "at": "2026-03-08T07:30:00Z"},
        ]))
        .await;
    api.wait_for(&format!("/v1/campaigns/{campaign}"), |body| {
        body["status"] == "completed"
    })
    .await;
    clock.set(at("2026-11-30T19:30:00Z"));

    // Contacts: one on each side of Kolkata's midnight, both on 30 November in UTC.
    let kolkata = "from=2026-11-30&to=2026-12-01&timezone=Asia/Kolkata";
    let growth = api.get(&format!("/v1/analytics/contacts?{kolkata}")).await;
    assert_eq!(
        growth.expect(200),
        &json!({"total": 2, "new": 2, "opted_out": 0, "growth": [
            {"date": "2026-11-30", "new": 1}, {"date": "2026-12-01", "new": 1}]})
    );
    let utc = api
        .get("/v1/analytics/contacts?from=2026-11-30&to=2026-12-01")
        .await;
    assert_eq!(
        utc.expect(200)["growth"],
        json!([{"date": "2026-11-30", "new": 2}, {"date": "2026-12-01", "new": 0}])
    );

    // Activity: sends and inbound messages by local hour, only the hours that had some.
    let activity = api.get(&format!("/v1/analytics/activity?{kolkata}")).await;
    assert_eq!(
        activity.expect(200),
        &json!([
            {"date": "2026-11-30", "hour": 23, "direction": "inbound", "count": 1},
            {"date": "2026-12-01", "hour": 0, "direction": "outbound", "count": 2},
            {"date": "2026-12-01", "hour": 0, "direction": "inbound", "count": 1},
        ])
    );
    let activity = api
        .get("/v1/analytics/activity?from=2026-11-30&to=2026-11-30")
        .await;
    assert_eq!(
        activity.expect(200),
        &json!([
            {"date": "2026-11-30", "hour": 18, "direction": "outbound", "count": 2},
            {"date": "2026-11-30", "hour": 18, "direction": "inbound", "count": 2},
        ])
    );
    let only_the_first_day = api
        .get("/v1/analytics/activity?from=2026-11-30&to=2026-11-30&timezone=Asia/Kolkata")
        .await;
    assert_eq!(
        only_the_first_day.expect(200),
        &json!([{"date": "2026-11-30", "hour": 23, "direction": "inbound", "count": 1}])
    );
    let dst = api
        .get(&format!(
            "/v1/analytics/activity?from=2026-03-08&to=2026-03-08&timezone=America/New_York&sender_id={sender}"
        ))
        .await;
    assert_eq!(
        dst.expect(200),
        &json!([
            {"date": "2026-03-08", "hour": 1, "direction": "inbound", "count": 1},
            {"date": "2026-03-08", "hour": 3, "direction": "inbound", "count": 1},
        ])
    );

    // Senders and campaigns over the default period (the last 30 days).
    let senders = api.get("/v1/analytics/senders").await;
    assert_eq!(
        senders.expect(200),
        &json!({"senders": [{"id": sender, "name": "Line", "sent": 2, "delivered": 1, "read": 1,
                             "failed": 1, "inbound": 2, "delivery_rate": 50.0}]})
    );
    let campaigns = api.get("/v1/analytics/campaigns").await;
    let body = campaigns.expect(200);
    assert_eq!(
        body["summary"],
        json!({"campaigns": 1, "sent": 2, "delivered": 1, "read": 1, "failed": 1,
               "delivery_rate": 50.0, "read_rate": 100.0})
    );
    assert_eq!(body["campaigns"][0]["id"], campaign.as_str());
    assert_eq!(body["campaigns"][0]["status"], "completed");
    assert_eq!(body["campaigns"][0]["started_at"], "2026-11-30T18:40:00Z");
    let before = api
        .get("/v1/analytics/campaigns?from=2026-11-01&to=2026-11-29")
        .await;
    assert_eq!(before.expect(200)["summary"]["campaigns"], 0);

    // The campaign's timeline, by minute and by hour (UTC).
    let minutes = api
        .get(&format!("/v1/campaigns/{campaign}/timeline?bucket=minute"))
        .await;
    assert_eq!(
        minutes.expect(200),
        &json!([
            {"at": "2026-11-30T18:40:00Z", "sent": 2, "delivered": 0, "read": 0, "failed": 0},
            {"at": "2026-11-30T18:50:00Z", "sent": 0, "delivered": 0, "read": 0, "failed": 1},
            {"at": "2026-11-30T19:05:00Z", "sent": 0, "delivered": 1, "read": 0, "failed": 0},
            {"at": "2026-11-30T19:20:00Z", "sent": 0, "delivered": 0, "read": 1, "failed": 0},
        ])
    );
    let hours = api.get(&format!("/v1/campaigns/{campaign}/timeline")).await;
    assert_eq!(
        hours.expect(200),
        &json!([
            {"at": "2026-11-30T18:00:00Z", "sent": 2, "delivered": 0, "read": 0, "failed": 1},
            {"at": "2026-11-30T19:00:00Z", "sent": 0, "delivered": 1, "read": 1, "failed": 0},
        ])
    );

    // Today is 30 November in UTC (two messages in), 1 December in Kolkata (one).
    let overview = api.get("/v1/analytics/overview").await;
    assert_eq!(
        overview.expect(200),
        &json!({"contacts": {"total": 2, "opted_out": 0, "blocked": 0},
                "senders": {"total": 1, "active": 1},
                "campaigns": {"running": 0, "scheduled": 0, "this_month": 1},
                "messages": {"today": {"outbound": 2, "inbound": 2}}})
    );
    let overview = api
        .get("/v1/analytics/overview?timezone=Asia/Kolkata")
        .await;
    assert_eq!(
        overview.expect(200)["messages"]["today"],
        json!({"outbound": 2, "inbound": 1})
    );

    // Opting out and blocking show at once.
    let contacts = api.get("/v1/contacts?per_page=10").await;
    let first = contacts.body["data"][0]["id"].as_str().unwrap().to_owned();
    api.post_empty(&format!("/v1/contacts/{first}/opt-out"))
        .await
        .expect(200);
    api.post_empty(&format!("/v1/contacts/{first}/block"))
        .await
        .expect(200);
    let overview = api.get("/v1/analytics/overview").await;
    assert_eq!(
        overview.expect(200)["contacts"],
        json!({"total": 2, "opted_out": 1, "blocked": 1})
    );
    let growth = api.get("/v1/analytics/contacts").await;
    assert_eq!(growth.expect(200)["opted_out"], 1);
}

async fn bad_periods_abilities_and_workspaces_are_refused(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    api.contact("+201000000001", json!({})).await;
    let campaign = api
        .post(
            "/v1/campaigns",
            json!({"name": "C", "sender_id": sender, "content": "Hi",
                   "audience": {"type": "all"}}),
        )
        .await
        .id();
    for (query, field) in [
        ("from=2026-02-30", "from"),
        ("to=yesterday", "to"),
        ("timezone=Mars/Olympus", "timezone"),
        ("from=2026-12-02&to=2026-12-01", "from"),
        ("from=2025-01-01&to=2026-01-02", "to"),
    ] {
        for path in [
            "/v1/analytics/campaigns",
            "/v1/analytics/senders",
            "/v1/analytics/contacts",
            "/v1/analytics/activity",
        ] {
            let reply = api.get(&format!("{path}?{query}")).await;
            let details = reply.expect_error(422, "validation_failed");
            assert!(
                details["errors"][field].is_array(),
                "{path}?{query}: {}",
                reply.body
            );
        }
    }
    let year = api
        .get("/v1/analytics/senders?from=2025-01-01&to=2026-01-01")
        .await;
    year.expect(200);
    let zone = api.get("/v1/analytics/overview?timezone=Nowhere").await;
    assert!(zone.expect_error(422, "validation_failed")["errors"]["timezone"].is_array());
    for sender_id in ["not-an-id".to_owned(), unknown_id()] {
        let reply = api
            .get(&format!("/v1/analytics/activity?sender_id={sender_id}"))
            .await;
        assert!(
            reply.expect_error(422, "validation_failed")["errors"]["sender_id"].is_array(),
            "{}",
            reply.body
        );
    }
    let bucket = api
        .get(&format!("/v1/campaigns/{campaign}/timeline?bucket=day"))
        .await;
    assert!(bucket.expect_error(422, "validation_failed")["errors"]["bucket"].is_array());
    api.get(&format!("/v1/campaigns/{}/timeline", unknown_id()))
        .await
        .expect_error(404, "not_found");

    let paths = [
        "/v1/analytics/overview".to_owned(),
        "/v1/analytics/campaigns".to_owned(),
        "/v1/analytics/senders".to_owned(),
        "/v1/analytics/contacts".to_owned(),
        "/v1/analytics/activity".to_owned(),
        format!("/v1/campaigns/{campaign}/timeline"),
    ];
    let reader = api.key("acme", "campaigns.read,contacts.read", None).await;
    for path in &paths {
        let reply = api.send(api.request_as(&reader, Method::GET, path)).await;
        let details = reply.expect_error(403, "insufficient_ability");
        assert_eq!(details["required_ability"], "analytics.read");
    }
    let analyst = api.key("acme", "analytics.read", None).await;
    for path in &paths {
        api.send(api.request_as(&analyst, Method::GET, path))
            .await
            .expect(200);
    }
    // Another workspace sees none of acme's numbers, and not its campaign.
    let stranger = api.key("globex", "analytics.read", None).await;
    let overview = api
        .send(api.request_as(&stranger, Method::GET, "/v1/analytics/overview"))
        .await;
    assert_eq!(overview.expect(200)["contacts"]["total"], 0);
    assert_eq!(overview.body["senders"]["total"], 0);
    let senders = api
        .send(api.request_as(&stranger, Method::GET, "/v1/analytics/senders"))
        .await;
    assert_eq!(senders.expect(200)["senders"], json!([]));
    api.send(api.request_as(&stranger, Method::GET, &paths[5]))
        .await
        .expect_error(404, "not_found");
    let activity = api
        .send(api.request_as(
            &stranger,
            Method::GET,
            &format!("/v1/analytics/activity?sender_id={sender}"),
        ))
        .await;
    assert!(activity.expect_error(422, "validation_failed")["errors"]["sender_id"].is_array());
}
