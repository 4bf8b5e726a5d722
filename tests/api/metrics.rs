//! `GET /metrics` (API.md, "Analytics, exports and metrics"): Prometheus's text format, read by
//! a Prometheus text parser, with what a campaign, an inbound message and a webhook did; the
//! optional bearer token. Counters are the process's, shared by every server a test binary
//! starts, so figures of shared labels are checked as lower bounds and per-sender ones exactly.

use std::time::Duration;

use chrono::Utc;
use herald::config::{Config, MetricsToken};
use herald::domain::callback::sign;
use prometheus_parse::{Sample, Scrape, Value as Metric};
use reqwest::Method;
use serde_json::json;

use super::Api;
use super::common::TestDb;

dialect_tests!(metrics_tell_what_the_engine_did_and_may_ask_for_a_token);

const TOKEN: &str = "scrape-me";

async fn scrape(api: &Api) -> Vec<Sample> {
    let response = reqwest::Client::new()
        .get(api.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    Scrape::parse(lines)
        .unwrap_or_else(|error| panic!("not Prometheus text ({error}):\n{text}"))
        .samples
}

/// The value of the sample of `metric` whose labels include `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|sample| {
            sample.metric == metric
                && labels
                    .iter()
                    .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| match &sample.value {
            Metric::Counter(value) | Metric::Gauge(value) | Metric::Untyped(value) => *value,
            Metric::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            Metric::Summary(_) => f64::NAN,
        })
}

async fn metrics_tell_what_the_engine_did_and_may_ask_for_a_token(db: TestDb) {
    let api = Api::start_with(db, |config| Config {
        allow_private_urls: true,
        metrics_token: Some(MetricsToken(TOKEN.into())),
        ..config
    })
    .await;
    for token in [None, Some("wrong"), Some("hrl_not_this_either")] {
        let mut request = api.client_without_token(Method::GET, "/metrics");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        api.send(request).await.expect_error(401, "unauthenticated");
    }

    // A webhook receiver, so that attempts are counted.
    let receiver = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    api.post(
        "/v1/webhooks",
        json!({"url": hook, "events": ["message.sent"]}),
    )
    .await
    .expect(201);

    // A paced sender: its lane waits at the spacing gate between sends.
    let created = api
        .post(
            "/v1/senders",
            json!({"name": "Paced", "provider": "sandbox", "pacing": {"rate_per_minute": 1200},
                   "provider_config": {"deliver_rate": 0, "read_rate": 0}}),
        )
        .await;
    created.expect(201);
    let sender = created.id();
    let secret = created.body["callback_secret"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        api.contact(&format!("+20100000000{n}"), json!({})).await;
    }
    let campaign = api.start_campaign(&sender, "Counted").await;
    api.wait_for(&format!("/v1/campaigns/{campaign}"), |body| {
        body["status"] == "completed"
    })
    .await;

    let body =
        json!({"events": [{"type": "inbound", "from": "+201000000001", "body": "hi"}]}).to_string();
    let timestamp = Utc::now().timestamp();
    api.send(
        api.client_without_token(Method::POST, &format!("/v1/callbacks/{sender}"))
            .header("X-Herald-Timestamp", timestamp.to_string())
            .header(
                "X-Herald-Signature",
                sign(&secret, timestamp, body.as_bytes()),
            )
            .header("Content-Type", "application/json")
            .body(body),
    )
    .await
    .expect(200);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let samples = scrape(&api).await;
        let delivered = value(
            &samples,
            "herald_webhook_deliveries_total",
            &[("outcome", "succeeded")],
        );
        if delivered.is_some_and(|count| count >= 3.0) {
            break samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhook attempts never counted: {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(
            &samples,
            "herald_sends_total",
            &[("sender_id", &sender), ("outcome", "sent")]
        ),
        Some(3.0)
    );
    let latency = value(
        &samples,
        "herald_provider_request_seconds",
        &[("provider", "sandbox")],
    );
    assert!(
        latency.is_some_and(|count| count >= 3.0),
        "provider latency histogram: {latency:?}"
    );
    let spacing = value(&samples, "herald_lane_wait_seconds", &[("gate", "spacing")]);
    assert!(
        spacing.is_some_and(|count| count >= 1.0),
        "spacing waits: {spacing:?}"
    );
    assert!(value(&samples, "herald_inbound_messages_total", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(value(&samples, "herald_pending_messages", &[]), Some(0.0));
}
