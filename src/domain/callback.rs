//! What providers tell Herald about its messages, and what arrives for it, in Herald's own
//! terms: the events every provider's callbacks are parsed into, and the signature of Herald's
//! own callback format (the `sandbox` and `http` providers'). Applying them is a service's
//! (`service::callbacks`).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::ids::SenderId;
use super::message::Event;

/// Signatures older or newer than this are refused, so a captured request cannot be replayed.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallbackEvent {
    Status {
        /// Herald's message id or the provider's.
        #[serde(rename = "message_id")]
        reference: String,
        #[serde(rename = "status")]
        kind: StatusKind,
        #[serde(default = "Utc::now")]
        at: DateTime<Utc>,
        #[serde(default)]
        error: Option<String>,
    },
    Inbound {
        from: String,
        body: String,
        #[serde(default = "Utc::now")]
        at: DateTime<Utc>,
        /// The name the person gave the platform (WhatsApp's profile name), if it says.
        #[serde(default)]
        name: Option<String>,
        /// The platform's id of the message: a message delivered again (a platform retrying
        /// its webhook) is recorded, and answered, once.
        #[serde(default, rename = "message_id")]
        id: Option<String>,
    },
    /// The person asked the platform to stop messages from this sender (WhatsApp's
    /// `user_preferences` stop). Not part of Herald's own callback format.
    #[serde(skip_deserializing)]
    OptOut { from: String, at: DateTime<Utc> },
    /// The person asked for messages again.
    #[serde(skip_deserializing)]
    OptIn { from: String, at: DateTime<Utc> },
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
pub struct CallbackPayload {
    pub events: Vec<CallbackEvent>,
}

/// Events for one sender, from its callback or its provider.
#[derive(Clone, Debug)]
pub struct SenderEvents {
    pub sender: SenderId,
    pub events: Vec<CallbackEvent>,
}

impl SenderEvents {
    pub fn new(sender: SenderId, events: Vec<CallbackEvent>) -> Self {
        Self { sender, events }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Herald-Timestamp or X-Herald-Signature")]
    Missing,
    #[error("the timestamp is not unix seconds")]
    BadTimestamp,
    #[error("the timestamp is more than 5 minutes away from now")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks `X-Herald-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{raw body}">`, in
/// constant time.
pub fn verify_signature(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now.timestamp() - seconds).abs() > SIGNATURE_TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let claimed = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac = signer(secret, timestamp.trim());
    mac.update(body);
    mac.verify_slice(&claimed)
        .map_err(|_| SignatureError::Mismatch)
}

/// The signature a sender of callbacks puts on `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = signer(secret, &timestamp.to_string());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn signer(secret: &str, timestamp: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac
}

impl StatusKind {
    pub fn event(self, at: DateTime<Utc>) -> Event {
        match self {
            Self::Sent => Event::Sent { at },
            Self::Delivered => Event::Delivered { at },
            Self::Read => Event::Read { at },
            Self::Failed => Event::Failed { at },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
    }

    #[test]
    fn signed_bodies_verify_and_anything_else_does_not() {
        let body = br#"{"events": []}"#;
        let ts = now().timestamp();
        let signature = sign("whsec", ts, body);
        let stamp = ts.to_string();
        assert_eq!(
            verify_signature("whsec", Some(&stamp), Some(&signature), body, now()),
            Ok(())
        );
        assert_eq!(
            verify_signature("other", Some(&stamp), Some(&signature), body, now()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                "whsec",
                Some(&stamp),
                Some(&signature),
                b"{\"events\": [1]}",
                now()
            ),
            Err(SignatureError::Mismatch),
            "a changed body fails"
        );
        assert_eq!(
            verify_signature("whsec", Some(&stamp), None, body, now()),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature("whsec", Some("yesterday"), Some(&signature), body, now()),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify_signature("whsec", Some(&stamp), Some("sha256=zz"), body, now()),
            Err(SignatureError::Mismatch)
        );
        let late = now() + chrono::Duration::seconds(SIGNATURE_TOLERANCE_SECONDS + 1);
        assert_eq!(
            verify_signature("whsec", Some(&stamp), Some(&signature), body, late),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn the_api_payload_parses() {
        let payload: CallbackPayload = serde_json::from_str(
            r#"{"events": [
              {"type": "status", "message_id": "abc", "status": "delivered", "at": "2026-11-21T10:00:00Z"},
              {"type": "status", "message_id": "def", "status": "failed", "error": "131026 undeliverable"},
              {"type": "inbound", "from": "+15551234567", "body": "STOP", "at": "2026-11-21T10:01:00Z"}]}"#,
        )
        .unwrap();
        assert_eq!(payload.events.len(), 3);
        assert!(matches!(
            &payload.events[1],
            CallbackEvent::Status { kind: StatusKind::Failed, error: Some(e), .. } if e.starts_with("131026")
        ));
        assert!(
            serde_json::from_str::<CallbackPayload>(
                r#"{"events": [{"type": "status", "status": "lost"}]}"#
            )
            .is_err()
        );
    }
}
