//! `GET /v1/openapi.json` documents every route of API.md, and the server serves no route that
//! the document lacks.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::Api;
use crate::common::TestDb;

/// Every operation of API.md.
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/senders"),
    ("get", "/v1/senders"),
    ("get", "/v1/senders/{id}"),
    ("patch", "/v1/senders/{id}"),
    ("delete", "/v1/senders/{id}"),
    ("post", "/v1/callbacks/{sender_id}"),
    ("post", "/v1/contacts"),
    ("get", "/v1/contacts"),
    ("get", "/v1/contacts/{id}"),
    ("patch", "/v1/contacts/{id}"),
    ("delete", "/v1/contacts/{id}"),
    ("post", "/v1/contacts/{id}/block"),
    ("post", "/v1/contacts/{id}/unblock"),
    ("post", "/v1/contacts/{id}/opt-out"),
    ("post", "/v1/contacts/{id}/opt-in"),
    ("get", "/v1/contacts/{id}/messages"),
    ("post", "/v1/contacts/import"),
    ("get", "/v1/imports/{id}"),
    ("post", "/v1/groups"),
    ("get", "/v1/groups"),
    ("get", "/v1/groups/{id}"),
    ("patch", "/v1/groups/{id}"),
    ("delete", "/v1/groups/{id}"),
    ("post", "/v1/groups/{id}/contacts"),
    ("delete", "/v1/groups/{id}/contacts"),
    ("post", "/v1/templates"),
    ("get", "/v1/templates"),
    ("get", "/v1/templates/{id}"),
    ("patch", "/v1/templates/{id}"),
    ("delete", "/v1/templates/{id}"),
    ("post", "/v1/templates/{id}/preview"),
    ("post", "/v1/campaigns"),
    ("get", "/v1/campaigns"),
    ("get", "/v1/campaigns/{id}"),
    ("patch", "/v1/campaigns/{id}"),
    ("delete", "/v1/campaigns/{id}"),
    ("post", "/v1/campaigns/{id}/schedule"),
    ("post", "/v1/campaigns/{id}/start"),
    ("post", "/v1/campaigns/{id}/pause"),
    ("post", "/v1/campaigns/{id}/resume"),
    ("post", "/v1/campaigns/{id}/cancel"),
    ("get", "/v1/campaigns/{id}/stats"),
    ("get", "/v1/campaigns/{id}/messages"),
    ("post", "/v1/messages"),
    ("get", "/v1/messages"),
    ("get", "/v1/messages/{id}"),
    ("delete", "/v1/messages/{id}"),
    ("put", "/v1/settings/keywords"),
    ("get", "/v1/settings/keywords"),
    ("post", "/v1/automations"),
    ("get", "/v1/automations"),
    ("get", "/v1/automations/{id}"),
    ("patch", "/v1/automations/{id}"),
    ("delete", "/v1/automations/{id}"),
    ("post", "/v1/automations/{id}/toggle"),
    ("get", "/v1/automations/{id}/runs"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("post", "/v1/webhooks/{id}/test"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("post", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay"),
    ("get", "/v1/analytics/overview"),
    ("get", "/v1/analytics/campaigns"),
    ("get", "/v1/analytics/senders"),
    ("get", "/v1/analytics/contacts"),
    ("get", "/v1/analytics/activity"),
    ("get", "/v1/campaigns/{id}/timeline"),
    ("get", "/v1/contacts/export"),
    ("get", "/v1/campaigns/{id}/messages/export"),
    ("get", "/metrics"),
    ("get", "/v1/me"),
    ("get", "/v1/api-keys"),
    ("post", "/v1/api-keys"),
    ("delete", "/v1/api-keys/{id}"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi.json"),
];

fn documented(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

async fn the_document_covers_every_route(db: TestDb) {
    let api = Api::start(db).await;
    let reply = api
        .send(api.client_without_token(Method::GET, "/v1/openapi.json"))
        .await;
    let document = reply.expect(200).clone();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let operations = documented(&document);
    for (method, path) in CONTRACT {
        assert!(
            operations.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is missing from the document"
        );
    }

    // Every method the server answers on a documented path is documented: a route registered
    // without its documentation answers something other than 405 here.
    let paths: BTreeSet<&String> = operations.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{sender_id}", &uuid::Uuid::now_v7().to_string());
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let listed = operations.contains(&(method.as_str().to_lowercase(), path.clone()));
            if !listed {
                let reply = api.send(api.request(method.clone(), &concrete)).await;
                assert_eq!(
                    reply.status.as_u16(),
                    405,
                    "{method} {path} answers but is not documented: {}",
                    reply.body
                );
                assert_eq!(reply.code(), "method_not_allowed");
            }
        }
    }

    // Authenticated operations say so, and each documents its errors with the envelope.
    let create = &document["paths"]["/v1/contacts"]["post"];
    for status in ["400", "401", "403", "409", "422", "429"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /v1/contacts lacks {status}"
        );
    }
    assert!(
        create["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key")
    );
    assert_eq!(
        document["paths"]["/v1/health"]["get"]["security"],
        serde_json::json!([{}])
    );
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    assert!(document["components"]["schemas"]["ErrorEnvelope"].is_object());
    api.stop().await;
}

dialect_tests!(the_document_covers_every_route);
