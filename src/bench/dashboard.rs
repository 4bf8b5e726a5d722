//! `herald bench --dashboard`: each dashboard page's server time on the analytics history
//! (1,000,000 messages, 100,000 contacts), as a signed-in browser asks for it.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use super::round;
use crate::domain::ids::CampaignId;

/// Requests of each page; the first warms caches and is not counted.
const SAMPLES: usize = 100;

/// Signs in with `token` and times every page; returns `{page: {p50_ms, p95_ms}}`.
pub async fn pages(
    base: &str,
    token: &str,
    big: CampaignId,
    contact: &str,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = sign_in(&client, base, token).await?;
    let check = "/campaigns/new/check?name=x&content=Hi+%3C%3Cname%3E%3E&audience=all&when=now";
    let sender_check = format!(
        "{check}&sender_id={}",
        first_sender(&client, base, &cookie).await?
    );
    let pages = [
        ("campaigns".to_owned(), "/campaigns".to_owned()),
        ("the 1M campaign".into(), format!("/campaigns/{big}")),
        (
            "the 1M campaign, its read messages".into(),
            format!("/campaigns/{big}?status=read"),
        ),
        (
            "the 1M campaign's live counters".into(),
            format!("/campaigns/{big}/live"),
        ),
        ("new campaign".into(), "/campaigns/new".into()),
        ("new campaign's check, everyone".into(), sender_check),
        ("contacts".into(), "/contacts".into()),
        (
            "contacts, searched".into(),
            "/contacts?q=Customer+4242".into(),
        ),
        ("a contact".into(), format!("/contacts/{contact}")),
        ("senders".into(), "/senders".into()),
        ("automations".into(), "/automations".into()),
        ("webhooks".into(), "/webhooks".into()),
        ("analytics, 30 days".into(), "/analytics".into()),
        (
            "analytics, 90 days, Kolkata".into(),
            format!(
                "/analytics?from={}&timezone=Asia/Kolkata",
                chrono::Utc::now().date_naive() - chrono::Days::new(90)
            ),
        ),
    ];
    let mut timings = serde_json::Map::new();
    for (name, path) in &pages {
        let mut samples = Vec::with_capacity(SAMPLES);
        for round_trip in 0..=SAMPLES {
            let started = Instant::now();
            let response = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.bytes().await?;
            if round_trip > 0 {
                samples.push(started.elapsed());
            }
        }
        samples.sort();
        let (p50, p95) = (
            samples[samples.len() / 2],
            samples[samples.len() * 95 / 100],
        );
        println!(
            "page {name}: p50 {:.2} ms, p95 {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3
        );
        timings.insert(
            name.clone(),
            json!({"p50_ms": round(p50.as_secs_f64() * 1e3), "p95_ms": round(p95.as_secs_f64() * 1e3)}),
        );
    }
    Ok(Value::Object(timings))
}

/// The sign-in form, as a browser fills it; returns the session's `Cookie` header.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{base}/login")).send().await?;
    let guard = cookie_pair(form.headers(), "herald_sign_in").context("no sign-in cookie")?;
    let html = form.text().await?;
    let marker = "name=\"sign_in_csrf\" value=\"";
    let start = html.find(marker).context("no sign-in token")? + marker.len();
    let end = start + html[start..].find('"').context("no sign-in token")?;
    let signed_in = client
        .post(format!("{base}/login"))
        .header("cookie", guard)
        .form(&[("token", token), ("sign_in_csrf", &html[start..end])])
        .send()
        .await?;
    cookie_pair(signed_in.headers(), "herald_session").context("not signed in")
}

fn cookie_pair(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .and_then(|value| value.split(';').next())
        .map(str::to_owned)
}

/// The first sender offered by the new-campaign form.
async fn first_sender(
    client: &reqwest::Client,
    base: &str,
    cookie: &str,
) -> anyhow::Result<String> {
    let html = client
        .get(format!("{base}/campaigns/new"))
        .header("cookie", cookie)
        .send()
        .await?
        .text()
        .await?;
    let select = html.find("id=\"sender_id\"").context("no sender list")?;
    let marker = "<option value=\"";
    let start = select + html[select..].find(marker).context("no sender")? + marker.len();
    let end = start + html[start..].find('"').context("no sender")?;
    Ok(html[start..end].to_owned())
}
