//! CSV exports (API.md, "Analytics, exports and metrics"): contacts with the import's columns
//! re-import unchanged into another workspace, filters, a large export arriving in many chunks
//! (streamed, never one buffer), a campaign's messages by status, the ability and workspace.

use reqwest::Method;
use serde_json::{Value, json};

use super::common::TestDb;
use super::{Api, unknown_id};

dialect_tests!(
    contacts_export_and_import_back_unchanged,
    a_large_export_is_streamed_in_chunks,
    a_campaigns_messages_export_by_status,
);

async fn import_as(api: &Api, token: &str, csv: &str) -> Value {
    let accepted = api
        .send(
            api.request_as(token, Method::POST, "/v1/contacts/import")
                .header("Content-Type", "text/csv")
                .body(csv.to_owned()),
        )
        .await;
    let id = accepted.expect(202)["import_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let reply = api
            .send(api.request_as(token, Method::GET, &format!("/v1/imports/{id}")))
            .await;
        if reply.body["status"] == "completed" {
            return reply.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", reply.body);
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The export's status, content type and text.
async fn export_as(api: &Api, token: &str, path: &str) -> (u16, String, String) {
    let response = api
        .request_as(token, Method::GET, path)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// Lines after the header, sorted: the order of rows is the export's (by id), not the file's.
fn rows(csv: &str) -> Vec<&str> {
    let mut rows: Vec<&str> = csv.lines().skip(1).collect();
    rows.sort();
    rows
}

async fn contacts_export_and_import_back_unchanged(db: TestDb) {
    let api = Api::start(db).await;
    let csv = "phone,name,email,tags,timezone,tier,city\n\
               +201000000001,\"Lovelace, Ada\",ada@example.com,vip;beta,Africa/Cairo,gold,Cairo\n\
               +201000000002,\"Say \"\"hi\"\"\",,beta,,,Giza\n\
               +201000000003,Plain,,,,silver,\n";
    let imported = import_as(&api, &api.token, csv).await;
    assert_eq!(imported["created"], 3, "{imported}");
    let (status, kind, exported) = export_as(&api, &api.token, "/v1/contacts/export").await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(kind, "text/csv; charset=utf-8");
    let header = exported.lines().next().unwrap();
    assert_eq!(header, "phone,name,email,tags,timezone,city,tier");
    assert_eq!(
        rows(&exported),
        [
            "+201000000001,\"Lovelace, Ada\",ada@example.com,vip;beta,Africa/Cairo,Cairo,gold",
            "+201000000002,\"Say \"\"hi\"\"\",,beta,,Giza,",
            "+201000000003,Plain,,,,,silver",
        ]
    );

    // Into another workspace and out again: the same file.
    let globex = api.key("globex", "*", None).await;
    let again = import_as(&api, &globex, &exported).await;
    assert_eq!(again["created"], 3, "{again}");
    let (_, _, round_trip) = export_as(&api, &globex, "/v1/contacts/export").await;
    assert_eq!(round_trip.lines().next(), Some(header));
    assert_eq!(rows(&round_trip), rows(&exported));

    // Filters.
    let first = api.get("/v1/contacts?search=Lovelace").await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post_empty(&format!("/v1/contacts/{first}/opt-out"))
        .await
        .expect(200);
    let (_, _, vip) = export_as(&api, &api.token, "/v1/contacts/export?tag=vip").await;
    assert_eq!(rows(&vip).len(), 1);
    assert!(vip.contains("Lovelace"));
    let (_, _, opted_in) = export_as(&api, &api.token, "/v1/contacts/export?opted_out=false").await;
    assert_eq!(rows(&opted_in).len(), 2);
    assert!(!opted_in.contains("Lovelace"));
    let (_, _, none) = export_as(&api, &api.token, "/v1/contacts/export?blocked=true").await;
    assert_eq!(none.lines().count(), 1, "the header alone: {none}");
    // Only the custom fields of the contacts exported are columns.
    let (_, _, silver) = export_as(&api, &api.token, "/v1/contacts/export?tag=vip").await;
    assert_eq!(
        silver.lines().next(),
        Some("phone,name,email,tags,timezone,city,tier")
    );

    let bad = api.get("/v1/contacts/export?opted_out=maybe").await;
    assert!(bad.expect_error(422, "validation_failed")["errors"]["opted_out"].is_array());
    let reader = api.key("acme", "contacts.read", None).await;
    let refused = api
        .send(api.request_as(&reader, Method::GET, "/v1/contacts/export"))
        .await;
    refused.expect_error(403, "insufficient_ability");
}

async fn a_large_export_is_streamed_in_chunks(db: TestDb) {
    let api = Api::start(db).await;
    let mut csv = String::from("phone,name\n");
    for n in 0..5_000 {
        csv.push_str(&format!("+2010{n:08},Contact {n}\n"));
    }
    import_as(&api, &api.token, &csv).await;
    let mut response = api
        .request(Method::GET, "/v1/contacts/export")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "a streamed body has no length up front"
    );
    let (mut chunks, mut lines) = (0, 0);
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks += 1;
        lines += chunk.iter().filter(|byte| **byte == b'\n').count();
    }
    assert_eq!(lines, 5_001);
    assert!(chunks >= 5, "rows arrive page by page: {chunks} chunks");
}

async fn a_campaigns_messages_export_by_status(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    for n in 1..=3 {
        api.contact(&format!("+20100000000{n}"), json!({})).await;
    }
    let blocked = api.contact("+201000000009", json!({})).await;
    api.post_empty(&format!("/v1/contacts/{blocked}/block"))
        .await
        .expect(200);
    let campaign = api.start_campaign(&sender, "Export").await;
    api.wait_for(&format!("/v1/campaigns/{campaign}"), |body| {
        body["status"] == "completed"
    })
    .await;
    let path = format!("/v1/campaigns/{campaign}/messages/export");
    let (status, kind, csv) = export_as(&api, &api.token, &path).await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,contact_id,phone,status,attempts,provider_message_id,error,created_at,sent_at,\
             delivered_at,read_at,failed_at,updated_at"
        )
    );
    let statuses: Vec<&str> = lines.map(|line| line.split(',').nth(3).unwrap()).collect();
    let sent = statuses.iter().filter(|status| **status == "sent").count();
    assert_eq!(sent, 3, "{csv}");
    // Sends first, then the blocked contact's skipped message, if the launch kept one.
    assert!(
        statuses[..3].iter().all(|status| *status == "sent")
            && statuses[3..].iter().all(|status| *status == "skipped"),
        "{csv}"
    );
    let (_, _, only_sent) = export_as(&api, &api.token, &format!("{path}?status=sent")).await;
    assert_eq!(only_sent.lines().count(), 4);
    let (_, _, failed) = export_as(&api, &api.token, &format!("{path}?status=failed")).await;
    assert_eq!(failed.lines().count(), 1);
    let bad = api.get(&format!("{path}?status=lost")).await;
    assert!(bad.expect_error(422, "validation_failed")["errors"]["status"].is_array());
    api.get(&format!("/v1/campaigns/{}/messages/export", unknown_id()))
        .await
        .expect_error(404, "not_found");
    let stranger = api.key("globex", "*", None).await;
    let (status, _, _) = export_as(&api, &stranger, &path).await;
    assert_eq!(status, 404);
}
