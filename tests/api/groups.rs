//! `/v1/groups`: static members by id or phone; dynamic filters resolved at use.

use serde_json::json;

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn static_groups_hold_members_and_dynamic_groups_filter(db: TestDb) {
    let api = Api::start(db).await;
    let jane = api
        .contact(
            "+201012345678",
            json!({"tags": ["vip"], "custom_fields": {"plan": "gold"}}),
        )
        .await;
    let omar = api.contact("+201112345678", json!({"tags": ["vip"]})).await;
    let zoe = api
        .contact("+4915112345678", json!({"custom_fields": {"plan": "gold"}}))
        .await;

    let created = api
        .post("/v1/groups", json!({"name": "Friends", "type": "static"}))
        .await;
    assert_eq!(created.expect(201)["contact_count"], 0);
    assert_eq!(created.body["type"], "static");
    let group = created.id();
    let added = api
        .post(
            &format!("/v1/groups/{group}/contacts"),
            json!({"contact_ids": [jane], "phones": ["+49 151 12345678", "+44 20 7946 0958"]}),
        )
        .await;
    let added = added.expect(200);
    assert_eq!(added["changed"], 2);
    assert_eq!(added["unknown_phones"], json!(["+44 20 7946 0958"]));
    // Adding again changes nothing.
    let again = api
        .post(
            &format!("/v1/groups/{group}/contacts"),
            json!({"contact_ids": [jane, zoe]}),
        )
        .await;
    assert_eq!(again.expect(200)["changed"], 0);
    assert_eq!(
        api.get(&format!("/v1/groups/{group}")).await.expect(200)["contact_count"],
        2
    );
    let removed = api
        .send(
            api.request(
                reqwest::Method::DELETE,
                &format!("/v1/groups/{group}/contacts"),
            )
            .json(&json!({"contact_ids": [zoe, omar]})),
        )
        .await;
    assert_eq!(removed.expect(200)["changed"], 1);
    assert_eq!(
        api.get(&format!("/v1/groups/{group}")).await.expect(200)["contact_count"],
        1
    );
    for body in [json!({}), json!({"phones": ["call me"]})] {
        api.post(&format!("/v1/groups/{group}/contacts"), body)
            .await
            .expect_error(422, "validation_failed");
    }

    let dynamic = api
        .post(
            "/v1/groups",
            json!({"name": "Gold VIPs", "type": "dynamic",
                   "filters": {"tags": ["vip"], "custom_fields": {"plan": "gold"}}}),
        )
        .await;
    assert_eq!(dynamic.expect(201)["contact_count"], 1, "only Jane is both");
    let dynamic = dynamic.id();
    // Resolved at use: a new matching contact counts at once.
    api.patch(
        &format!("/v1/contacts/{omar}"),
        json!({"custom_fields": {"plan": "gold"}}),
    )
    .await
    .expect(200);
    assert_eq!(
        api.get(&format!("/v1/groups/{dynamic}")).await.expect(200)["contact_count"],
        2
    );
    api.post(
        &format!("/v1/groups/{dynamic}/contacts"),
        json!({"contact_ids": [zoe]}),
    )
    .await
    .expect_error(422, "validation_failed");
    let renamed = api
        .patch(
            &format!("/v1/groups/{dynamic}"),
            json!({"name": "Gold", "filters": {"tags": ["vip"]}}),
        )
        .await;
    assert_eq!(renamed.expect(200)["name"], "Gold");
    assert_eq!(renamed.body["contact_count"], 2);

    for body in [
        json!({"name": "x", "type": "static", "filters": {"tags": ["vip"]}}),
        json!({"name": "", "type": "static"}),
        json!({"name": "x", "type": "smart"}),
        json!({"name": "x", "type": "dynamic", "filters": {"created_from": "yesterday"}}),
    ] {
        api.post("/v1/groups", body)
            .await
            .expect_error(422, "validation_failed");
    }
    api.patch(
        &format!("/v1/groups/{group}"),
        json!({"filters": {"tags": ["vip"]}}),
    )
    .await
    .expect_error(422, "validation_failed");

    assert_eq!(api.get("/v1/groups").await.expect(200)["total"], 2);
    api.delete(&format!("/v1/groups/{group}")).await.expect(204);
    api.get(&format!("/v1/groups/{group}"))
        .await
        .expect_error(404, "not_found");
    api.post(
        &format!("/v1/groups/{}/contacts", unknown_id()),
        json!({"contact_ids": [jane]}),
    )
    .await
    .expect_error(404, "not_found");
    // The members' contacts are untouched.
    api.get(&format!("/v1/contacts/{jane}")).await.expect(200);
    api.stop().await;
}

dialect_tests!(static_groups_hold_members_and_dynamic_groups_filter);
