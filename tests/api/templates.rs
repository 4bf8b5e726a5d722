//! `/v1/templates`: variables found at write time, previews, and missing values named.

use serde_json::json;

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn templates_list_their_variables_and_preview(db: TestDb) {
    let api = Api::start(db).await;
    let created = api
        .post(
            "/v1/templates",
            json!({"name": "Welcome", "content": "Hi <<name|there>>, your code is <<code>>"}),
        )
        .await;
    assert_eq!(created.expect(201)["variables"], json!(["name", "code"]));
    let id = created.id();

    let preview_path = format!("/v1/templates/{id}/preview");
    let preview = |body| api.post(&preview_path, body);
    let rendered = preview(json!({"variables": {"code": "X1"}})).await;
    assert_eq!(
        rendered.expect(200)["rendered"],
        "Hi there, your code is X1"
    );
    let jane = api
        .contact(
            "+201012345678",
            json!({"name": "Jane", "custom_fields": {"code": "J7"}}),
        )
        .await;
    let rendered = preview(json!({"contact_id": jane})).await;
    assert_eq!(rendered.expect(200)["rendered"], "Hi Jane, your code is J7");
    let missing = preview(json!({"variables": {"name": "Bob"}})).await;
    let errors = &missing.expect_error(422, "validation_failed")["errors"];
    assert!(
        errors["variables.code"][0]
            .as_str()
            .unwrap()
            .contains("'code'")
    );
    preview(json!({"contact_id": unknown_id(), "variables": {"code": "1"}}))
        .await
        .expect_error(422, "validation_failed");

    for (field, body) in [
        ("content", json!({"name": "t", "content": "Hi <<name"})),
        ("content", json!({"name": "t", "content": "Hi <<>>"})),
        ("content", json!({"name": "t", "content": "  "})),
        ("name", json!({"name": "", "content": "Hi"})),
        (
            "media_url",
            json!({"name": "t", "content": "Hi", "media_url": "file:///etc/passwd"}),
        ),
    ] {
        let reply = api.post("/v1/templates", body).await;
        assert!(
            reply.expect_error(422, "validation_failed")["errors"][field].is_array(),
            "{}",
            reply.body
        );
    }

    let patched = api
        .patch(
            &format!("/v1/templates/{id}"),
            json!({"content": "Bye <<first_name>>"}),
        )
        .await;
    assert_eq!(patched.expect(200)["variables"], json!(["first_name"]));
    assert_eq!(patched.body["name"], "Welcome");
    assert_eq!(
        api.get(&format!("/v1/templates/{id}")).await.expect(200)["content"],
        "Bye <<first_name>>"
    );
    assert_eq!(api.get("/v1/templates").await.expect(200)["total"], 1);
    api.delete(&format!("/v1/templates/{id}")).await.expect(204);
    api.get(&format!("/v1/templates/{id}"))
        .await
        .expect_error(404, "not_found");
    preview(json!({})).await.expect_error(404, "not_found");
    api.stop().await;
}

dialect_tests!(templates_list_their_variables_and_preview);
