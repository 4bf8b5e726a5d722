//! Outbound webhooks' rules: which events an endpoint asked for, how a delivery is signed
//! (Standard Webhooks), and when a failed attempt is tried again.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::event::EventType;

super::named_enum! {
    /// Where a delivery stands.
    pub enum DeliveryStatus {
        /// Not yet received by the endpoint: due now, or waiting for its next attempt.
        Pending => "pending",
        Succeeded => "succeeded",
        /// Every attempt failed, or the endpoint is gone (410); replayable.
        Failed => "failed",
    }
}

/// One entry of an endpoint's `events`: an event's name, `prefix.*`, or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventPattern(String);

impl EventPattern {
    /// Whether events of `kind` go to an endpoint with this pattern.
    pub fn matches(&self, kind: EventType) -> bool {
        let name = kind.as_str();
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventPattern {
    type Error = String;

    /// Only patterns that can match something: a misspelt event would otherwise be a webhook
    /// that never fires.
    fn try_from(pattern: String) -> Result<Self, String> {
        let pattern = pattern.trim().to_owned();
        let known = if pattern == "*" {
            true
        } else if let Some(prefix) = pattern.strip_suffix(".*") {
            EventType::ALL
                .iter()
                .any(|kind| kind.as_str().split_once('.').map(|(p, _)| p) == Some(prefix))
        } else {
            pattern.parse::<EventType>().is_ok()
        };
        if known {
            Ok(Self(pattern))
        } else {
            Err(format!(
                "'{pattern}' is not an event, 'prefix.*' of events, or '*'; events: {}",
                EventType::ALL
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

impl From<EventPattern> for String {
    fn from(pattern: EventPattern) -> String {
        pattern.0
    }
}

/// Whether any of `patterns` takes events of `kind`.
pub fn wants(patterns: &[EventPattern], kind: EventType) -> bool {
    patterns.iter().any(|pattern| pattern.matches(kind))
}

/// The prefix of a signing secret, as Standard Webhooks writes them.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The key a secret stands for: the bytes its base64 encodes (the prefix is optional, as in
/// the reference implementations).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`
/// with the secret's key.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The waits before the attempts after the first (API.md): a delivery is attempted six times.
pub const RETRY_SCHEDULE: [Duration; 5] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
];

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What follows a failed attempt, the `failures`-th in a row: another attempt after the returned
/// wait (the endpoint's `Retry-After` when it gave one), or none — the delivery has failed.
pub fn next_attempt_after(failures: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let index = usize::try_from(failures).ok()?.checked_sub(1)?;
    let scheduled = *RETRY_SCHEDULE.get(index)?;
    Some(retry_after.map_or(scheduled, |asked| asked.min(MAX_RETRY_AFTER)))
}

/// The `webhook-id` of an event: its position in the log, the same on every retry and replay.
pub fn webhook_id(event_position: i64) -> String {
    format!("evt_{event_position}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_reproduce_the_standard_webhooks_test_vector() {
        // The specification's published vector: a receiver's Standard Webhooks library
        // accepts what reproduces it.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn new_secrets_are_32_random_bytes_in_base64() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"), "{secret}");
        assert_eq!(secret_key(&secret).map(|key| key.len()), Some(32));
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn patterns_match_names_prefixes_and_everything() {
        let pattern = |text: &str| EventPattern::try_from(text.to_owned()).unwrap();
        assert!(pattern("message.delivered").matches(EventType::MessageDelivered));
        assert!(!pattern("message.delivered").matches(EventType::MessageRead));
        assert!(pattern("message.*").matches(EventType::MessageRead));
        assert!(!pattern("message.*").matches(EventType::CampaignStarted));
        assert!(pattern("*").matches(EventType::ImportCompleted));
        for bad in [
            "message.lost",
            "mesage.*",
            "message",
            "",
            "*.sent",
            "message.**",
        ] {
            assert!(EventPattern::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_retry_schedule_is_api_mds_and_retry_after_wins() {
        let schedule: Vec<Option<u64>> = (1..=6)
            .map(|failures| next_attempt_after(failures, None).map(|wait| wait.as_secs()))
            .collect();
        assert_eq!(
            schedule,
            [Some(10), Some(60), Some(300), Some(1800), Some(7200), None]
        );
        assert_eq!(
            next_attempt_after(1, Some(Duration::from_secs(120))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            next_attempt_after(2, Some(Duration::from_secs(7 * 24 * 3600))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(next_attempt_after(6, Some(Duration::from_secs(1))), None);
        assert_eq!(next_attempt_after(0, None), None);
    }
}
