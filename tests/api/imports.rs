//! `POST /v1/contacts/import` and `GET /v1/imports/{id}`: a CSV import as a job.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestDb;
use crate::{Api, unknown_id};

async fn import(api: &Api, csv: &str) -> Value {
    let accepted = api
        .send(
            api.request(Method::POST, "/v1/contacts/import")
                .header("Content-Type", "text/csv")
                .body(csv.to_owned()),
        )
        .await;
    let import_id = accepted.expect(202)["import_id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.wait_for(&format!("/v1/imports/{import_id}"), |i| {
        i["status"] == "completed" || i["status"] == "failed"
    })
    .await
}

async fn csv_imports_create_update_and_report_bad_rows(db: TestDb) {
    let api = Api::start(db).await;
    let existing = api
        .contact(
            "+201012345678",
            json!({"name": "Old name", "tags": ["old"], "custom_fields": {"plan": "free"}}),
        )
        .await;
    let csv = "\u{feff}phone,name,email,tags,timezone,plan\n\
               201012345678,Jane,jane@example.com,vip;new,Africa/Cairo,gold\n\
               +49 151 12345678,Zoe,,,,\n\
               not a phone,Bad,,,,\n\
               +4915112345679,Bad Mail,nope,,,\n\
               +4915112345677,Bad Zone,,,Mars/Base,\n\
               \n\
               +4915112345678,Zoe Again,,returning,,silver\n";
    let done = import(&api, csv).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        (
            done["total"].as_i64(),
            done["created"].as_i64(),
            done["updated"].as_i64(),
            done["failed"].as_i64()
        ),
        (Some(6), Some(1), Some(2), Some(3)),
        "{done}"
    );
    let lines: Vec<i64> = done["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5, 6]);
    assert!(
        done["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );

    let jane = api.get(&format!("/v1/contacts/{existing}")).await;
    let jane = jane.expect(200);
    assert_eq!(jane["name"], "Jane");
    assert_eq!(jane["email"], "jane@example.com");
    assert_eq!(jane["tags"], json!(["old", "vip", "new"]));
    assert_eq!(jane["custom_fields"], json!({"plan": "gold"}));
    assert_eq!(jane["timezone"], "Africa/Cairo");
    let zoe = api.get("/v1/contacts?search=%2B4915112345678").await;
    let zoe = &zoe.expect(200)["data"][0];
    assert_eq!(
        zoe["name"], "Zoe Again",
        "a later row updates an earlier one"
    );
    assert_eq!(zoe["custom_fields"], json!({"plan": "silver"}));
    assert_eq!(api.get("/v1/contacts").await.expect(200)["total"], 2);

    for csv in ["", "name,email\nJane,jane@example.com\n", "[]"] {
        let refused = api
            .send(api.request(Method::POST, "/v1/contacts/import").body(csv))
            .await;
        assert!(refused.expect_error(422, "validation_failed")["errors"]["body"].is_array());
    }
    api.get(&format!("/v1/imports/{}", unknown_id()))
        .await
        .expect_error(404, "not_found");
    api.stop().await;
}

async fn an_import_spanning_many_batches_writes_every_row_once(db: TestDb) {
    let api = Api::start(db).await;
    let mut csv = String::from("phone,name,tier\n");
    for n in 0..5_000 {
        csv.push_str(&format!("+2010{n:08},Contact {n},t{}\n", n % 3));
    }
    let done = import(&api, &csv).await;
    assert_eq!(done["created"], 5_000, "{done}");
    assert_eq!(done["failed"], 0);
    assert_eq!(
        api.get("/v1/contacts?per_page=1").await.expect(200)["total"],
        5_000
    );
    let again = import(&api, &csv).await;
    assert_eq!(
        (again["created"].as_i64(), again["updated"].as_i64()),
        (Some(0), Some(5_000))
    );
    api.stop().await;
}

/// The API and imports share one phone rule: an impossible length is refused, a number of the
/// right form in an unassigned range (API.md's own `+1 555 …` examples) is accepted.
async fn imports_and_the_api_take_the_same_phones(db: TestDb) {
    let api = Api::start(db).await;
    api.post("/v1/contacts", json!({"phone": "+15551234567"}))
        .await
        .expect(201);
    api.post("/v1/contacts", json!({"phone": "+1 555 123 456"}))
        .await
        .expect_error(422, "validation_failed");
    let done = import(
        &api,
        "phone,name\n+1 555 765 4321,Test\n+1 555 765 432,Short\n",
    )
    .await;
    assert_eq!(
        (done["created"].as_i64(), done["failed"].as_i64()),
        (Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(done["errors"][0]["line"], 3, "{done}");
}

dialect_tests!(
    imports_and_the_api_take_the_same_phones,
    csv_imports_create_update_and_report_bad_rows,
    an_import_spanning_many_batches_writes_every_row_once,
);
