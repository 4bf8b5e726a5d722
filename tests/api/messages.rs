//! `/v1/messages`: single sends, now or later, cancellation while pending.

use serde_json::json;

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn single_messages_are_sent_scheduled_and_canceled(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    api.contact("+201012345678", json!({"name": "Jane"})).await;

    let now = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+20 101 234 5678", "content": "Hi <<name>>, <<code>>",
                   "variables": {"code": "42"}}),
        )
        .await;
    assert_eq!(now.expect(202)["status"], "pending");
    let id = now.id();
    let sent = api
        .wait_for(&format!("/v1/messages/{id}"), |m| m["status"] == "sent")
        .await;
    assert_eq!(sent["body"], "Hi Jane, 42");
    assert_eq!(sent["to"], "+201012345678");
    assert!(sent["sent_at"].as_str().unwrap().ends_with('Z'));
    assert!(sent.get("delivered_at").is_some() && sent.get("read_at").is_some());
    assert!(sent["contact_id"].is_string(), "matched to its contact");
    api.delete(&format!("/v1/messages/{id}"))
        .await
        .expect_error(409, "invalid_transition");

    let later = api
        .post(
            "/v1/messages",
            json!({"sender_id": sender, "to": "+201112345678", "content": "Later",
                   "scheduled_at": "2099-01-01T09:00:00+02:00"}),
        )
        .await;
    let later_id = later.id();
    let pending = api.get(&format!("/v1/messages/{later_id}")).await;
    assert_eq!(pending.expect(200)["status"], "pending");
    let canceled = api.delete(&format!("/v1/messages/{later_id}")).await;
    assert_eq!(canceled.expect(200)["status"], "skipped");
    let details = api
        .delete(&format!("/v1/messages/{later_id}"))
        .await
        .expect_error(409, "invalid_transition")
        .clone();
    assert_eq!(details["status"], "skipped");

    let listed = api
        .get("/v1/messages?status=skipped&direction=outbound")
        .await;
    assert_eq!(listed.expect(200)["total"], 1);
    assert_eq!(
        api.get("/v1/messages?direction=inbound").await.expect(200)["total"],
        0
    );
    api.get("/v1/messages?direction=sideways")
        .await
        .expect_error(422, "validation_failed");
    api.get(&format!("/v1/messages/{}", unknown_id()))
        .await
        .expect_error(404, "not_found");
    api.delete(&format!("/v1/messages/{}", unknown_id()))
        .await
        .expect_error(404, "not_found");
    api.stop().await;
}

async fn single_messages_refuse_what_cannot_be_sent(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    let blocked = api.contact("+201012345678", json!({})).await;
    api.post_empty(&format!("/v1/contacts/{blocked}/block"))
        .await
        .expect(200);
    let out = api.contact("+201112345678", json!({})).await;
    api.post_empty(&format!("/v1/contacts/{out}/opt-out"))
        .await
        .expect(200);
    for (field, body) in [
        (
            "to",
            json!({"sender_id": sender, "to": "+201012345678", "content": "hi"}),
        ),
        (
            "to",
            json!({"sender_id": sender, "to": "+201112345678", "content": "hi"}),
        ),
        (
            "to",
            json!({"sender_id": sender, "to": "12", "content": "hi"}),
        ),
        (
            "sender_id",
            json!({"sender_id": unknown_id(), "to": "+4915112345678", "content": "hi"}),
        ),
        (
            "content",
            json!({"sender_id": sender, "to": "+4915112345678"}),
        ),
        (
            "template_id",
            json!({"sender_id": sender, "to": "+4915112345678", "template_id": unknown_id()}),
        ),
        (
            "variables.code",
            json!({"sender_id": sender, "to": "+4915112345678", "content": "<<code>>"}),
        ),
        (
            "scheduled_at",
            json!({"sender_id": sender, "to": "+4915112345678", "content": "hi",
                                "scheduled_at": "2001-01-01T00:00:00Z"}),
        ),
        (
            "scheduled_at",
            json!({"sender_id": sender, "to": "+4915112345678", "content": "hi",
                                "scheduled_at": "tomorrow"}),
        ),
    ] {
        let reply = api.post("/v1/messages", body).await;
        assert!(
            reply.expect_error(422, "validation_failed")["errors"][field].is_array(),
            "{field}: {}",
            reply.body
        );
    }
    assert_eq!(
        api.get("/v1/messages").await.expect(200)["total"],
        0,
        "nothing queued"
    );
    api.stop().await;
}

dialect_tests!(
    single_messages_are_sent_scheduled_and_canceled,
    single_messages_refuse_what_cannot_be_sent,
);
