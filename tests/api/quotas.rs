//! API keys' quotas and `/v1/me` (API.md, "API keys and quotas"): daily and monthly quotas
//! with their headers and `Retry-After`, refused requests using none of the quota, keys over
//! HTTP for `*` keys, and, on PostgreSQL, quotas and the per-minute limit shared by two servers.

use chrono::{Timelike, Utc};
use herald::cli::{CreateKey, create_api_key};
use herald::clock::SystemClock;
use reqwest::Method;
use serde_json::json;

use super::common::TestDb;
use super::{Api, unknown_id};

dialect_tests!(
    quotas_are_counted_and_refused_with_their_code,
    keys_are_managed_over_http_by_star_keys,
);

/// A key of `acme` with quotas; its token.
async fn key_with(
    api: &Api,
    daily: Option<u32>,
    monthly: Option<u32>,
    per_minute: Option<u32>,
) -> String {
    let args = CreateKey {
        name: "quota".into(),
        abilities: "*".into(),
        workspace: "acme".into(),
        rate_per_minute: per_minute,
        daily_quota: daily,
        monthly_quota: monthly,
        expires_at: None,
    };
    create_api_key(&api.state().db, &SystemClock, &args)
        .await
        .expect("key created")
        .1
}

async fn quotas_are_counted_and_refused_with_their_code(db: TestDb) {
    let api = Api::start(db).await;
    let token = key_with(&api, Some(3), None, None).await;
    for left in [2, 1, 0] {
        let reply = api
            .send(api.request_as(&token, Method::GET, "/v1/me"))
            .await;
        reply.expect(200);
        assert_eq!(reply.header("x-ratelimit-daily-limit"), Some("3"));
        assert_eq!(
            reply.header("x-ratelimit-daily-remaining"),
            Some(left.to_string().as_str())
        );
        assert_eq!(reply.body["usage"]["today"], 3 - left);
        assert_eq!(reply.body["limits"]["daily"], 3);
        assert_eq!(reply.body["limits"]["monthly"], json!(null));
        assert_eq!(reply.body["workspace"], "acme");
        assert_eq!(reply.body["abilities"], json!(["*"]));
    }
    for _ in 0..2 {
        let refused = api
            .send(api.request_as(&token, Method::GET, "/v1/contacts"))
            .await;
        let details = refused.expect_error(429, "daily_quota_exceeded");
        let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        let now = Utc::now();
        let to_midnight = 86_400 - u64::from(now.num_seconds_from_midnight());
        assert!(
            retry_after.abs_diff(to_midnight) <= 2,
            "{retry_after} vs {to_midnight}"
        );
        assert_eq!(details["retry_after"], retry_after);
        assert_eq!(refused.header("x-ratelimit-daily-remaining"), Some("0"));
    }
    // Refused requests used none of the quota: today and the month count the three admitted.
    let star = api.get("/v1/api-keys").await;
    let id: herald::domain::ids::ApiKeyId = star.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["daily_quota"] == 3)
        .and_then(|key| key["id"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let periods = herald::domain::quota::Periods::at(Utc::now());
    let mut conn = api.state().db.read().await.unwrap();
    for period in [&periods.day, &periods.month] {
        let used = herald::store::api_keys::requests_in(conn.conn(), id, period)
            .await
            .unwrap();
        assert_eq!(used, 3, "{period}");
    }
    drop(conn);

    let monthly = key_with(&api, None, Some(2), None).await;
    for _ in 0..2 {
        api.send(api.request_as(&monthly, Method::GET, "/v1/me"))
            .await
            .expect(200);
    }
    let refused = api
        .send(api.request_as(&monthly, Method::GET, "/v1/me"))
        .await;
    refused.expect_error(429, "monthly_quota_exceeded");
    assert!(refused.header("retry-after").is_some());

    // A key without quotas: no daily headers, usage still counted.
    let plain = key_with(&api, None, None, Some(100)).await;
    api.send(api.request_as(&plain, Method::GET, "/v1/contacts"))
        .await
        .expect(200);
    let me = api
        .send(api.request_as(&plain, Method::GET, "/v1/me"))
        .await;
    me.expect(200);
    assert!(me.header("x-ratelimit-daily-limit").is_none());
    assert_eq!(me.body["usage"], json!({"today": 2, "month": 2}));
    assert_eq!(
        me.body["limits"],
        json!({"per_minute": 100, "daily": null, "monthly": null})
    );

    // On PostgreSQL, a second server shares the quotas and the minute's budget.
    if api.state().db.dialect() == herald::store::Dialect::Postgres {
        let twin = api.twin().await;
        let shared = key_with(&api, Some(3), None, Some(2)).await;
        let client = reqwest::Client::new();
        let on = |base: &str| client.get(format!("{base}/v1/me")).bearer_auth(&shared);
        assert_eq!(on(&api.base).send().await.unwrap().status(), 200);
        assert_eq!(on(&twin).send().await.unwrap().status(), 200);
        let third = api.send(on(&api.base)).await;
        third.expect_error(429, "rate_limited");
        let mut tally = 0;
        for base in [&twin, &api.base] {
            let reply = api.send(on(base)).await;
            tally += usize::from(reply.status == 429);
        }
        assert_eq!(tally, 2, "the minute's budget is shared by both servers");
        let daily = key_with(&api, Some(3), None, None).await;
        for base in [&api.base, &twin, &api.base] {
            let reply = client
                .get(format!("{base}/v1/me"))
                .bearer_auth(&daily)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
        }
        let refused = api
            .send(client.get(format!("{twin}/v1/me")).bearer_auth(&daily))
            .await;
        refused.expect_error(429, "daily_quota_exceeded");
    }
}

async fn keys_are_managed_over_http_by_star_keys(db: TestDb) {
    let api = Api::start(db).await;
    let created = api
        .post(
            "/v1/api-keys",
            json!({"name": "Reporting", "abilities": ["contacts.read"], "daily_quota": 5}),
        )
        .await;
    created.expect(201);
    let id = created.id();
    let token = created.body["token"].as_str().unwrap().to_owned();
    api.send(api.request_as(&token, Method::GET, "/v1/contacts"))
        .await
        .expect(200);
    let listed = api.get("/v1/api-keys").await;
    let keys = listed.expect(200)["data"].as_array().unwrap().clone();
    let reporting = keys.iter().find(|key| key["id"] == id.as_str()).unwrap();
    assert_eq!(reporting["name"], "Reporting");
    assert_eq!(reporting["abilities"], json!(["contacts.read"]));
    assert_eq!(reporting["daily_quota"], 5);
    assert!(reporting.get("token").is_none() && reporting.get("secret_digest").is_none());

    // Only `*` keys manage keys.
    for (method, path) in [
        (Method::GET, "/v1/api-keys".to_owned()),
        (Method::POST, "/v1/api-keys".to_owned()),
        (Method::DELETE, format!("/v1/api-keys/{id}")),
    ] {
        let reply = api
            .send(
                api.request_as(&token, method, &path)
                    .json(&json!({"name": "x"})),
            )
            .await;
        assert_eq!(
            reply.expect_error(403, "insufficient_ability")["required_ability"],
            "*"
        );
    }
    for (body, field) in [
        (json!({"name": " "}), "name"),
        (json!({"name": "x", "abilities": []}), "abilities"),
        (json!({"name": "x", "abilities": ["root"]}), "abilities"),
        (json!({"name": "x", "daily_quota": 0}), "daily_quota"),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let reply = api.post("/v1/api-keys", body.clone()).await;
        let errors = reply.expect_error(422, "validation_failed")["errors"]
            .as_object()
            .unwrap()
            .clone();
        // `abilities` or the element at fault, `abilities[0]`.
        assert!(
            errors.keys().any(|name| name.starts_with(field)),
            "{body}: {}",
            reply.body
        );
    }

    // Another workspace's keys are neither listed nor revocable.
    let globex = api.key("globex", "*", None).await;
    let theirs = api
        .send(api.request_as(&globex, Method::GET, "/v1/api-keys"))
        .await;
    assert!(
        theirs.expect(200)["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|key| key["id"] != id.as_str())
    );
    api.send(api.request_as(&globex, Method::DELETE, &format!("/v1/api-keys/{id}")))
        .await
        .expect_error(404, "not_found");
    api.delete(&format!("/v1/api-keys/{}", unknown_id()))
        .await
        .expect_error(404, "not_found");

    api.delete(&format!("/v1/api-keys/{id}")).await.expect(204);
    api.send(api.request_as(&token, Method::GET, "/v1/contacts"))
        .await
        .expect_error(401, "unauthenticated");
    let listed = api.get("/v1/api-keys").await;
    let revoked = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_string());
}
