//! What the modules of the seed platforms (Zagely, Botbiz, Chattu, Mavibot) share: a configuration read
//! with every problem named at once, a JSON `POST` whose refusal is read through the platform's
//! own error envelope into what it means for the message, the lane and the sender, and the
//! HMAC signatures of their webhooks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{CallbackError, ProviderConfigError, SendError};
use crate::url_guard::UrlGuard;

/// Every missing or wrong field of a configuration, collected so that one answer names them all.
#[derive(Default)]
pub(super) struct Problems(Vec<(String, String)>);

impl Problems {
    /// `value` trimmed, or a problem saying what the field is for.
    pub fn required(&mut self, field: &str, value: Option<String>, what: &str) -> Option<String> {
        match value
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
        {
            Some(value) => Some(value),
            None => {
                self.push(field, format!("is required: {what}"));
                None
            }
        }
    }

    /// The platform's base URL (`default` unless given), which must pass the URL guard.
    pub fn base_url(
        &mut self,
        field: &str,
        value: Option<String>,
        default: Option<&str>,
        guard: UrlGuard,
    ) -> Option<reqwest::Url> {
        let Some(text) = value.or_else(|| default.map(str::to_owned)) else {
            self.push(field, "is required: the platform's address");
            return None;
        };
        match guard.parse(&text) {
            Ok(url) => Some(url),
            Err(refused) => {
                self.push(field, refused.to_string());
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_owned(), message.into()));
    }

    /// `Ok` when nothing was wrong, else every problem.
    pub fn finish(self) -> Result<(), ProviderConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProviderConfigError::Fields(self.0))
        }
    }
}

/// The error of a configuration whose problems were all reported but whose parts are missing
/// all the same (unreachable once [`Problems::finish`] passed).
pub(super) fn incomplete() -> ProviderConfigError {
    ProviderConfigError::Fields(vec![(String::new(), "is incomplete".into())])
}

/// A send's timeout: `timeout_ms` when given (at least a millisecond), else the platform's.
pub(super) fn timeout(timeout_ms: Option<u64>, default: Duration) -> Duration {
    timeout_ms
        .map_or(default, Duration::from_millis)
        .max(Duration::from_millis(1))
}

/// A secret of the sender's stored configuration that its webhooks are checked with.
pub(super) fn callback_secret<'c>(config: &'c Value, name: &str) -> Result<&'c str, CallbackError> {
    config
        .get(name)
        .and_then(Value::as_str)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| CallbackError::Unauthenticated(format!("the sender has no {name}")))
}

/// `base` with `path` appended to its own path (`https://api.botbiz.io/v1` + `/whatsapp/messages`).
pub(super) fn endpoint(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// A platform's answer to a request.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `Null` when the body is not JSON.
    pub body: Value,
}

/// Sends `request` with `body` as JSON and reads the answer; no answer at all is a passing
/// failure (or a lasting one, for a request that cannot be built or a TLS refusal). The error
/// never names the URL: some platforms put their key in it (Mavibot).
pub(super) async fn post_json(
    request: reqwest::RequestBuilder,
    body: &Value,
    timeout: Duration,
) -> Result<Answer, SendError> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(timeout)
        .body(body.to_string())
        .send()
        .await
        .map_err(|error| super::http::request_failed(&error.without_url()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A send's answer read: accepted (the platform's id at the first of `ids` that holds one), or
/// refused with the platform's words from `reason` — by its HTTP status, or as a lasting failure
/// when a 2xx says so in its body (`refused_in_body`).
pub(super) fn accepted_or_refused(
    answer: &Answer,
    refused_in_body: bool,
    ids: &[&str],
    reason: impl FnOnce(&Value) -> String,
) -> Result<super::Accepted, SendError> {
    if answer.status.is_success() && !refused_in_body {
        return Ok(super::Accepted {
            provider_message_id: id_at(&answer.body, ids),
        });
    }
    let reason = reason(&answer.body);
    if answer.status.is_success() {
        return Err(SendError::Fail(reason));
    }
    Err(refusal(answer, reason, Utc::now()))
}

/// `{"error": {"code", "message"}}` (Zagely's, Botbiz's) as `code: message`.
pub(super) fn coded_error(body: &Value) -> String {
    let text = error_text(body, &["/error/message", "/message"]);
    match body.pointer("/error/code").and_then(Value::as_str) {
        Some(code) => format!("{code}: {text}"),
        None => text,
    }
}

/// What a refusal means, by its HTTP status: 429 holds the lane (until `Retry-After`, else the
/// `X-RateLimit-Reset` instant), 401 and 403 pause the sender (its credentials), 408 and 5xx are
/// tried again, any other refusal fails the message. `reason` is the platform's own words.
pub(super) fn refusal(answer: &Answer, reason: String, now: DateTime<Utc>) -> SendError {
    let reason = format!("HTTP {}: {reason}", answer.status.as_u16());
    match answer.status {
        StatusCode::TOO_MANY_REQUESTS => SendError::HoldLane {
            after: rate_limit_wait(&answer.headers, now),
            reason,
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SendError::PauseSender(reason),
        StatusCode::REQUEST_TIMEOUT => SendError::Retry {
            after: super::http::retry_after(&answer.headers),
            reason,
        },
        status if status.is_server_error() => SendError::Retry {
            after: super::http::retry_after(&answer.headers),
            reason,
        },
        _ => SendError::Fail(reason),
    }
}

/// How long a rate-limited client waits: `Retry-After` seconds, else until `X-RateLimit-Reset`
/// (unix seconds, as Botbiz and MazBot send it; a small number is read as seconds from now).
pub(super) fn rate_limit_wait(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(after) = super::http::retry_after(headers) {
        return Some(after);
    }
    let reset: i64 = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Unix seconds are past 2001; anything smaller is a number of seconds to wait.
    const UNIX_SECONDS_FROM: i64 = 1_000_000_000;
    let seconds = if reset >= UNIX_SECONDS_FROM {
        reset - now.timestamp()
    } else {
        reset
    };
    Some(Duration::from_secs(u64::try_from(seconds.max(1)).ok()?))
}

/// The text of an answer's error, from the first of `pointers` that holds a string (a
/// platform's `/error/message`), else the body's own text.
pub(super) fn error_text(body: &Value, pointers: &[&str]) -> String {
    let found = pointers
        .iter()
        .find_map(|pointer| body.pointer(pointer).and_then(Value::as_str))
        .filter(|text| !text.trim().is_empty());
    match (found, body) {
        (Some(text), _) => text.trim().to_owned(),
        (None, Value::Null) => "no readable answer".to_owned(),
        (None, other) => other.to_string().chars().take(300).collect(),
    }
}

/// The first of `pointers` in `body` that holds an id (a string, or a number as text).
pub(super) fn id_at(body: &Value, pointers: &[&str]) -> Option<String> {
    pointers
        .iter()
        .find_map(|pointer| match body.pointer(pointer)? {
            Value::String(id) if !id.is_empty() => Some(id.clone()),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        })
}

/// Whether `claimed` (hex, with or without a `sha256=` prefix) is the HMAC-SHA256 of the
/// concatenated `parts` under `secret`, compared in constant time.
pub(super) fn hmac_sha256_matches(secret: &str, parts: &[&[u8]], claimed: &str) -> bool {
    let claimed = claimed.trim();
    let digest = claimed.strip_prefix("sha256=").unwrap_or(claimed);
    let Ok(claimed) = hex::decode(digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&claimed).is_ok()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(super) fn same_secret(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// A header's value as text.
pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A callback body as JSON, or the error the endpoint answers.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    field: &str,
) -> Result<T, CallbackError> {
    serde_json::from_slice(body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            CallbackError::Malformed(format!("the body is not valid JSON: {error}"))
        } else {
            CallbackError::Invalid {
                field: field.to_owned(),
                message: error.to_string(),
            }
        }
    })
}

/// A phone as a platform writes it (`15551234567`, `+1 555…`, `15551234567@c.us`) in Herald's
/// E.164 form.
pub(super) fn e164(phone: &str) -> String {
    let number = phone.split('@').next().unwrap_or(phone);
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    format!("+{digits}")
}

/// An instant a platform gives as RFC 3339 text, unix seconds or unix milliseconds.
pub(super) fn instant(value: Option<&Value>) -> Option<DateTime<Utc>> {
    match value? {
        Value::String(text) => DateTime::parse_from_rfc3339(text.trim())
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| text.trim().parse::<i64>().ok().and_then(from_unix)),
        Value::Number(number) => number.as_i64().and_then(from_unix),
        _ => None,
    }
}

fn from_unix(value: i64) -> Option<DateTime<Utc>> {
    // Milliseconds since the epoch pass 10^11 in 1973; seconds will not before the year 5138.
    const MILLISECONDS_FROM: i64 = 100_000_000_000;
    if value >= MILLISECONDS_FROM {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_rate_limit_waits_for_retry_after_else_the_reset_instant() {
        let now = DateTime::from_timestamp(1_681_036_740, 0).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1681036800"));
        assert_eq!(
            rate_limit_wait(&headers, now),
            Some(Duration::from_secs(60))
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("30"));
        assert_eq!(
            rate_limit_wait(&headers, now),
            Some(Duration::from_secs(30))
        );
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(&headers, now), Some(Duration::from_secs(7)));
        assert_eq!(rate_limit_wait(&HeaderMap::new(), now), None);
    }

    #[test]
    fn signatures_are_checked_with_or_without_their_prefix() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let digest = hex::encode(mac.finalize().into_bytes());
        let parts: [&[u8]; 3] = [b"1700000000", b".", b"{\"a\":1}"];
        assert!(hmac_sha256_matches("whsec", &parts, &digest));
        assert!(hmac_sha256_matches(
            "whsec",
            &parts,
            &format!("sha256={digest}")
        ));
        assert!(!hmac_sha256_matches("other", &parts, &digest));
        assert!(!hmac_sha256_matches("whsec", &parts, "sha256=zz"));
        assert!(!hmac_sha256_matches("whsec", &parts[..2], &digest));
    }

    #[test]
    fn phones_and_instants_are_read_in_every_form_platforms_use() {
        assert_eq!(e164("15551234567"), "+15551234567");
        assert_eq!(e164("+1 555-123-4567"), "+15551234567");
        assert_eq!(e164("9721234567@c.us"), "+9721234567");
        let at = DateTime::parse_from_rfc3339("2023-11-04T18:44:16Z").unwrap();
        for value in [
            serde_json::json!("2023-11-04T18:44:16Z"),
            serde_json::json!(1_699_123_456),
            serde_json::json!("1699123456"),
            serde_json::json!(1_699_123_456_000_i64),
        ] {
            assert_eq!(
                instant(Some(&value)),
                Some(at.with_timezone(&Utc)),
                "{value}"
            );
        }
        assert_eq!(instant(Some(&serde_json::json!("yesterday"))), None);
        assert_eq!(instant(None), None);
    }

    #[test]
    fn the_url_of_an_endpoint_keeps_the_base_path() {
        let base = reqwest::Url::parse("https://api.botbiz.io/v1/").unwrap();
        assert_eq!(
            endpoint(&base, "/whatsapp/messages").as_str(),
            "https://api.botbiz.io/v1/whatsapp/messages"
        );
    }
}
