//! What happened, as others may react to it: the kinds of events in Herald's event log and the
//! payload each carries. The log itself is a table (`store::events`); its readers are webhooks,
//! live pages and automations. Names and payloads are API.md's ("Outbound webhooks").

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::campaign::CampaignStatus;
use super::ids::{AutomationId, CampaignId, ContactId, ImportId, MessageId, SenderId};
use super::message::{Counters, MessageStatus};

macro_rules! event_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The kind of an event, named as API.md lists them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($variant),*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name),*
                }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;
            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($name => Ok(EventType::$variant),)*
                    other => Err(UnknownEventType(other.to_owned())),
                }
            }
        }
    };
}

event_types! {
    MessageSent => "message.sent",
    MessageDelivered => "message.delivered",
    MessageRead => "message.read",
    MessageFailed => "message.failed",
    MessageReceived => "message.received",
    CampaignStarted => "campaign.started",
    CampaignPaused => "campaign.paused",
    CampaignResumed => "campaign.resumed",
    CampaignCompleted => "campaign.completed",
    CampaignCanceled => "campaign.canceled",
    ContactCreated => "contact.created",
    ContactUpdated => "contact.updated",
    ContactOptedOut => "contact.opted_out",
    ContactOptedIn => "contact.opted_in",
    AutomationReplied => "automation.replied",
    ImportCompleted => "import.completed",
    WebhookTest => "webhook.test",
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type '{0}'")]
pub struct UnknownEventType(pub String);

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventType {
    /// The event an outbound message's arrival at `status` is, when it is one others hear of:
    /// claims, retries and skips are the engine's business.
    pub fn of_message_status(status: MessageStatus) -> Option<EventType> {
        match status {
            MessageStatus::Sent => Some(EventType::MessageSent),
            MessageStatus::Delivered => Some(EventType::MessageDelivered),
            MessageStatus::Read => Some(EventType::MessageRead),
            MessageStatus::Failed => Some(EventType::MessageFailed),
            MessageStatus::Pending | MessageStatus::Sending | MessageStatus::Skipped => None,
        }
    }

    /// The status a `message.*` status event tells of.
    pub fn message_status(self) -> Option<MessageStatus> {
        match self {
            EventType::MessageSent => Some(MessageStatus::Sent),
            EventType::MessageDelivered => Some(MessageStatus::Delivered),
            EventType::MessageRead => Some(MessageStatus::Read),
            EventType::MessageFailed => Some(MessageStatus::Failed),
            _ => None,
        }
    }

    /// The event of a campaign's move from `from` to `to`, when it is one (scheduling is not).
    pub fn of_campaign_transition(from: CampaignStatus, to: CampaignStatus) -> Option<EventType> {
        use CampaignStatus::*;
        match (from, to) {
            (Draft | Scheduled, Running) => Some(EventType::CampaignStarted),
            (Paused, Running) => Some(EventType::CampaignResumed),
            (_, Paused) => Some(EventType::CampaignPaused),
            (_, Completed) => Some(EventType::CampaignCompleted),
            (_, Canceled) => Some(EventType::CampaignCanceled),
            (_, Draft | Scheduled | Running) => None,
        }
    }
}

/// `data` of `message.sent | delivered | read | failed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageEvent {
    pub message_id: MessageId,
    pub campaign_id: Option<CampaignId>,
    pub contact_id: Option<ContactId>,
    /// Unknown only for a message deleted (with its campaign) before the event was read.
    pub sender_id: Option<SenderId>,
    pub to: Option<String>,
    pub status: MessageStatus,
    pub error: Option<String>,
}

/// `data` of `message.received`: what a contact wrote to a sender.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub message_id: MessageId,
    pub contact_id: Option<ContactId>,
    pub sender_id: SenderId,
    pub from: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// `data` of `automation.replied`: a rule answered an inbound message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutomationEvent {
    pub automation_id: AutomationId,
    pub name: String,
    pub sender_id: SenderId,
    pub contact_id: ContactId,
    pub inbound_message_id: MessageId,
    pub reply_message_id: MessageId,
}

/// `data` of `campaign.*`: the campaign's stats as it moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignEvent {
    pub campaign_id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    #[serde(flatten)]
    pub counters: Counters,
    /// Why it paused, when Herald paused it (the sender could not send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
}

/// `data` of `contact.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactEvent {
    pub contact_id: ContactId,
    pub phone: String,
    pub name: Option<String>,
    pub opted_out: bool,
}

/// `data` of `webhook.test`: sent to the one endpoint being tested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookTestEvent {
    pub webhook_id: super::ids::WebhookId,
    pub message: String,
}

/// `data` of `import.completed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportEvent {
    pub import_id: ImportId,
    pub status: super::contact::ImportStatus,
    pub total: i64,
    pub created: i64,
    pub updated: i64,
    pub failed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for kind in EventType::ALL {
            assert_eq!(kind.as_str().parse::<EventType>(), Ok(*kind));
        }
        assert_eq!(EventType::ALL.len(), 17, "API.md lists seventeen events");
        assert!("message.lost".parse::<EventType>().is_err());
    }

    #[test]
    fn only_the_statuses_others_hear_of_are_events() {
        assert_eq!(
            EventType::of_message_status(MessageStatus::Read),
            Some(EventType::MessageRead)
        );
        assert_eq!(EventType::of_message_status(MessageStatus::Sending), None);
        for status in MessageStatus::ALL {
            if let Some(kind) = EventType::of_message_status(status) {
                assert_eq!(kind.message_status(), Some(status));
                // The database's trigger names the event 'message.' || status.
                assert_eq!(kind.as_str(), format!("message.{}", status.as_str()));
            }
        }
        use CampaignStatus::*;
        assert_eq!(
            EventType::of_campaign_transition(Paused, Running),
            Some(EventType::CampaignResumed)
        );
        assert_eq!(
            EventType::of_campaign_transition(Scheduled, Running),
            Some(EventType::CampaignStarted)
        );
        assert_eq!(EventType::of_campaign_transition(Draft, Scheduled), None);
    }
}
