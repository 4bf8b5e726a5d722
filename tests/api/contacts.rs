//! `/v1/contacts`: E.164 identity, filters, consent flags.

use serde_json::json;

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn contacts_are_keyed_by_their_e164_phone(db: TestDb) {
    let api = Api::start(db).await;
    let created = api
        .post(
            "/v1/contacts",
            json!({"phone": "+20 101-234-5678", "name": " Jane ", "email": "jane@example.com",
                   "tags": ["vip", "vip", " new"], "custom_fields": {"code": "A1", "visits": 3},
                   "timezone": "Africa/Cairo"}),
        )
        .await;
    let body = created.expect(201).clone();
    assert_eq!(body["phone"], "+201012345678");
    assert_eq!(body["name"], "Jane");
    assert_eq!(body["tags"], json!(["vip", "new"]));
    assert_eq!(body["custom_fields"], json!({"code": "A1", "visits": "3"}));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    let id = created.id();

    let same = api
        .post("/v1/contacts", json!({"phone": "201012345678"}))
        .await;
    same.expect_error(409, "duplicate");
    for (field, body) in [
        ("phone", json!({"phone": "12"})),
        ("phone", json!({"phone": "call me"})),
        ("email", json!({"phone": "+4915112345678", "email": "nope"})),
        (
            "timezone",
            json!({"phone": "+4915112345678", "timezone": "Mars/Olympus"}),
        ),
        (
            "custom_fields.nested",
            json!({"phone": "+4915112345678", "custom_fields": {"nested": {}}}),
        ),
    ] {
        let reply = api.post("/v1/contacts", body).await;
        assert!(
            reply.expect_error(422, "validation_failed")["errors"][field].is_array(),
            "{field}: {}",
            reply.body
        );
    }

    let shown = api.get(&format!("/v1/contacts/{id}")).await;
    assert_eq!(shown.expect(200)["email"], "jane@example.com");
    let patched = api
        .patch(
            &format!("/v1/contacts/{id}"),
            json!({"name": null, "tags": ["gold"]}),
        )
        .await;
    let patched = patched.expect(200);
    assert_eq!(patched["name"], json!(null));
    assert_eq!(
        patched["email"], "jane@example.com",
        "absent fields are kept"
    );
    assert_eq!(patched["tags"], json!(["gold"]));
    let other = api.contact("+4915112345678", json!({})).await;
    api.patch(
        &format!("/v1/contacts/{other}"),
        json!({"phone": "+20 1012345678"}),
    )
    .await
    .expect_error(409, "duplicate");
    api.patch(&format!("/v1/contacts/{other}"), json!({"phone": "0"}))
        .await
        .expect_error(422, "validation_failed");

    api.delete(&format!("/v1/contacts/{id}")).await.expect(204);
    api.get(&format!("/v1/contacts/{id}"))
        .await
        .expect_error(404, "not_found");
    api.delete(&format!("/v1/contacts/{id}"))
        .await
        .expect_error(404, "not_found");
    api.patch(&format!("/v1/contacts/{}", unknown_id()), json!({}))
        .await
        .expect_error(404, "not_found");
    api.stop().await;
}

async fn contacts_are_found_by_search_tag_and_flags(db: TestDb) {
    let api = Api::start(db).await;
    let jane = api
        .contact(
            "+201012345678",
            json!({"name": "Jane Doe", "tags": ["vip"]}),
        )
        .await;
    let omar = api
        .contact(
            "+201112345678",
            json!({"name": "Omar", "email": "omar@jane.example"}),
        )
        .await;
    let zoe = api.contact("+4915112345678", json!({"name": "Zoe"})).await;

    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let found = api.get("/v1/contacts?search=JANE").await;
    let mut matched = ids(found.expect(200));
    matched.sort();
    let mut expected = vec![jane.clone(), omar.clone()];
    expected.sort();
    assert_eq!(matched, expected, "name or email, any case");
    assert_eq!(
        ids(api.get("/v1/contacts?search=4915").await.expect(200)),
        [zoe.as_str()]
    );
    assert_eq!(
        ids(api.get("/v1/contacts?tag=vip").await.expect(200)),
        [jane.as_str()]
    );
    // A search for LIKE's own wildcards matches them literally.
    assert_eq!(
        api.get("/v1/contacts?search=%25").await.expect(200)["total"],
        0
    );

    let blocked = api.post_empty(&format!("/v1/contacts/{omar}/block")).await;
    assert_eq!(blocked.expect(200)["blocked"], true);
    let out = api.post_empty(&format!("/v1/contacts/{zoe}/opt-out")).await;
    let opted_out_at = out.expect(200)["opted_out_at"].clone();
    assert!(opted_out_at.is_string());
    // Opting out twice keeps the first time.
    let again = api.post_empty(&format!("/v1/contacts/{zoe}/opt-out")).await;
    assert_eq!(again.expect(200)["opted_out_at"], opted_out_at);
    assert_eq!(
        ids(api.get("/v1/contacts?blocked=true").await.expect(200)),
        [omar.as_str()]
    );
    assert_eq!(
        ids(api.get("/v1/contacts?opted_out=true").await.expect(200)),
        [zoe.as_str()]
    );
    assert_eq!(
        api.get("/v1/contacts?opted_out=false&blocked=false")
            .await
            .expect(200)["total"],
        1
    );

    api.post_empty(&format!("/v1/contacts/{omar}/unblock"))
        .await
        .expect(200);
    let back = api.post_empty(&format!("/v1/contacts/{zoe}/opt-in")).await;
    assert_eq!(back.expect(200)["opted_out_at"], json!(null));
    assert_eq!(
        api.get("/v1/contacts?opted_out=false&blocked=false")
            .await
            .expect(200)["total"],
        3
    );
    api.post_empty(&format!("/v1/contacts/{}/block", unknown_id()))
        .await
        .expect_error(404, "not_found");

    let page = api.get("/v1/contacts?per_page=2&page=2").await;
    let page = page.expect(200);
    assert_eq!(
        (page["page"].as_u64(), page["per_page"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(page["total"], 3);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    api.stop().await;
}

dialect_tests!(
    contacts_are_keyed_by_their_e164_phone,
    contacts_are_found_by_search_tag_and_flags,
);
